{
  "targets": [
    {
      "target_name": "switchyard",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/netns.cc",
        "native/object.cc",
        "native/maps.cc",
        "native/tc.cc",
        "native/xdp.cc",
        "native/prog.cc",
        "native/cgroup.cc",
        "native/iter.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(pkg-config --libs libbpf)"],
      "cflags": ["<!@(pkg-config --cflags libbpf)"]
    }
  ]
}
