// GET a URL from inside a netns (the lab runs it there): prints {status, body}.
const url = process.argv[2] ?? '';
const r = await fetch(url);
process.stdout.write(`${JSON.stringify({ status: r.status, body: await r.text() })}\n`);
