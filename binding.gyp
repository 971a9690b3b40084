# The native addon rpe_native (C on Node-API, sources in src/native/); the target is defined in
# src/native/rpe_native.gypi, shared with src/native/binding.gyp (see there for why).
{
  "includes": ["src/native/rpe_native.gypi"]
}
