// The 3D rank grid against Megatron-LM's ordering, and the layouts it refuses.
#include <catch2/catch.hpp>

#include "trident/core/error.hpp"
#include "trident/parallel/topology.hpp"

using trident::ParallelLayout;
using trident::Topology;
using V = std::vector<int>;

namespace {

std::string error_of_layout(int world, int dp, int tp, int pp) {
  try {
    trident::resolve_layout(world, dp, tp, pp);
  } catch (const trident::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("dp=2 tp=2 pp=2 follows Megatron-LM's rank order", "[topology]") {
  const ParallelLayout l{2, 2, 2};
  // Megatron-LM (initialize_model_parallel, world 8, tp 2, pp 2): tensor groups
  // [0,1] [2,3] [4,5] [6,7]; data groups [0,2] [1,3] [4,6] [5,7]; pipeline groups
  // [0,4] [1,5] [2,6] [3,7].
  const std::vector<V> tp_groups{{0, 1}, {0, 1}, {2, 3}, {2, 3}, {4, 5}, {4, 5}, {6, 7}, {6, 7}};
  const std::vector<V> dp_groups{{0, 2}, {1, 3}, {0, 2}, {1, 3}, {4, 6}, {5, 7}, {4, 6}, {5, 7}};
  const std::vector<V> pp_groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {0, 4}, {1, 5}, {2, 6}, {3, 7}};
  for (int r = 0; r < 8; ++r) {
    Topology t(r, 8, l);
    INFO(t.describe());
    CHECK(t.tp_rank() == r % 2);
    CHECK(t.dp_rank() == (r / 2) % 2);
    CHECK(t.pp_rank() == r / 4);
    CHECK(t.tp_group() == tp_groups[r]);
    CHECK(t.dp_group() == dp_groups[r]);
    CHECK(t.pp_group() == pp_groups[r]);
    CHECK(t.rank_of(t.dp_rank(), t.tp_rank(), t.pp_rank()) == r);
    CHECK(t.is_first_stage() == (r < 4));
    CHECK(t.is_last_stage() == (r >= 4));
    CHECK(t.prev_pipeline_rank() == (r < 4 ? -1 : r - 4));
    CHECK(t.next_pipeline_rank() == (r < 4 ? r + 4 : -1));
  }
  CHECK(Topology(5, 8, l).describe() == "rank 5: dp 0/2 tp 1/2 pp 1/2");
}

TEST_CASE("groups partition the world for every layout of 12 ranks", "[topology]") {
  for (int tp : {1, 2, 3, 4, 6, 12}) {
    for (int pp : {1, 2, 3, 4, 6, 12}) {
      if (12 % (tp * pp) != 0) continue;
      const ParallelLayout l = trident::resolve_layout(12, 0, tp, pp);
      INFO("dp " << l.dp << " tp " << tp << " pp " << pp);
      for (int r = 0; r < 12; ++r) {
        Topology t(r, 12, l);
        // group[i] is the rank with coordinate i on that axis, and differs only on that axis.
        for (int i = 0; i < tp; ++i) {
          Topology o(t.tp_group()[i], 12, l);
          CHECK((o.tp_rank() == i && o.dp_rank() == t.dp_rank() && o.pp_rank() == t.pp_rank()));
        }
        for (int i = 0; i < l.dp; ++i) {
          Topology o(t.dp_group()[i], 12, l);
          CHECK((o.dp_rank() == i && o.tp_rank() == t.tp_rank() && o.pp_rank() == t.pp_rank()));
        }
        for (int i = 0; i < pp; ++i) {
          Topology o(t.pp_group()[i], 12, l);
          CHECK((o.pp_rank() == i && o.tp_rank() == t.tp_rank() && o.dp_rank() == t.dp_rank()));
        }
      }
    }
  }
}

TEST_CASE("tensor-parallel neighbours are adjacent ranks", "[topology]") {
  Topology t(6, 16, ParallelLayout{2, 4, 2});
  CHECK(t.tp_group() == V{4, 5, 6, 7});
  CHECK(t.dp_group() == V{2, 6});
  CHECK(t.pp_group() == V{6, 14});
}

TEST_CASE("resolve_layout fills in dp", "[topology]") {
  ParallelLayout l = trident::resolve_layout(8, 0, 2, 2);
  CHECK(l.dp == 2);
  l = trident::resolve_layout(6, 0, 3, 1);
  CHECK(l.dp == 2);
  l = trident::resolve_layout(1, 0, 1, 1);
  CHECK(l.dp == 1);
  l = trident::resolve_layout(4, 4, 1, 1);
  CHECK(l.dp == 4);
}

TEST_CASE("layouts that do not match the world are refused with the numbers", "[topology]") {
  CHECK(error_of_layout(6, 2, 2, 2) ==
        "--dp 2 x --tp 2 x --pp 2 = 8 does not match the 6 ranks launched");
  CHECK_THAT(error_of_layout(6, 0, 4, 1),
             Catch::Contains("--tp 4 x --pp 1 = 4 does not divide the 6 ranks launched"));
  CHECK_THAT(error_of_layout(8, 0, 0, 1), Catch::Contains("--tp 0 is not a positive"));
  CHECK_THAT(error_of_layout(8, 0, 2, -1), Catch::Contains("--pp -1 is not a positive"));
  CHECK_THAT(error_of_layout(8, -2, 2, 2), Catch::Contains("--dp -2 is not a positive"));
  CHECK_THAT(error_of_layout(8, 65536, 65536, 2),
             Catch::Contains("= 8589934592 does not match the 8 ranks"));
  CHECK_THROWS_WITH(Topology(8, 8, ParallelLayout{2, 2, 2}),
                    Catch::Contains("world rank 8 is outside the 8 ranks"));
  CHECK_THROWS_WITH(Topology(0, 4, ParallelLayout{2, 2, 2}),
                    Catch::Contains("= 8 does not match the 4 ranks launched"));
}
