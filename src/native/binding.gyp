# Entry for a source build of an installed package, where no root binding.gyp ships:
#   npx node-gyp rebuild --directory=node_modules/reward-pool-engine/src/native
# The loader (index.ts) looks in src/native/build/ after build/ and prebuilds/.
{
  "includes": ["rpe_native.gypi"]
}
