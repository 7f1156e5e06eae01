// The Catch2 entry point, alone in its file because it compiles slowly.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
