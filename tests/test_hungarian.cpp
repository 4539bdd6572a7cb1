#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "detr/matcher/hungarian.hpp"
#include "helpers.hpp"

using namespace detr;

namespace {
double total(const std::vector<double>& c, int64_t nc, const Assignment& a) {
  double s = 0;
  for (size_t k = 0; k < a.rows.size(); ++k) s += c[size_t(a.rows[k] * nc + a.cols[k])];
  return s;
}

// Minimum over every injective map from the smaller side into the larger.
double brute_force(const std::vector<double>& c, int64_t nr, int64_t nc) {
  bool t = nr > nc;
  int64_t small = t ? nc : nr, large = t ? nr : nc;
  std::vector<int64_t> perm(large);
  std::iota(perm.begin(), perm.end(), 0);
  double best = INFINITY;
  do {
    double s = 0;
    for (int64_t i = 0; i < small; ++i) s += t ? c[size_t(perm[i] * nc + i)] : c[size_t(i * nc + perm[i])];
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

void check_valid(const Assignment& a, int64_t nr, int64_t nc) {
  REQUIRE(int64_t(a.rows.size()) == std::min(nr, nc));
  REQUIRE(std::is_sorted(a.rows.begin(), a.rows.end()));
  std::vector<int64_t> r = a.rows, c = a.cols;
  std::sort(r.begin(), r.end());
  std::sort(c.begin(), c.end());
  REQUIRE(std::adjacent_find(r.begin(), r.end()) == r.end());
  REQUIRE(std::adjacent_find(c.begin(), c.end()) == c.end());
  for (size_t k = 0; k < a.rows.size(); ++k) {
    REQUIRE(a.rows[k] >= 0);
    REQUIRE(a.rows[k] < nr);
    REQUIRE(a.cols[k] >= 0);
    REQUIRE(a.cols[k] < nc);
  }
}

// scipy's rectangular_lsap.cpp (1.10), transcribed line by line: the oracle for tie-breaking.
Assignment scipy_lsap(std::vector<double> cost, int64_t nr, int64_t nc) {
  const bool transposed = nc < nr;
  if (transposed) {
    std::vector<double> t(cost.size());
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < nc; ++c) t[size_t(c * nr + r)] = cost[size_t(r * nc + c)];
    cost = t;
    std::swap(nr, nc);
  }
  std::vector<double> u(nr, 0), v(nc, 0), shortest(nc);
  std::vector<int64_t> path(nc, -1), col4row(nr, -1), row4col(nc, -1), remaining(nc);
  std::vector<bool> SR(nr), SC(nc);
  for (int64_t cur = 0; cur < nr; ++cur) {
    double min_val = 0;
    int64_t i = cur, num_remaining = nc, sink = -1;
    for (int64_t it = 0; it < nc; ++it) remaining[it] = nc - it - 1;
    std::fill(SR.begin(), SR.end(), false);
    std::fill(SC.begin(), SC.end(), false);
    std::fill(shortest.begin(), shortest.end(), INFINITY);
    while (sink == -1) {
      int64_t index = -1;
      double lowest = INFINITY;
      SR[i] = true;
      for (int64_t it = 0; it < num_remaining; ++it) {
        int64_t j = remaining[it];
        double r = min_val + cost[size_t(i * nc + j)] - u[i] - v[j];
        if (r < shortest[j]) path[j] = i, shortest[j] = r;
        if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == -1)) lowest = shortest[j], index = it;
      }
      min_val = lowest;
      if (min_val == INFINITY) throw std::runtime_error("infeasible");
      int64_t j = remaining[index];
      if (row4col[j] == -1) sink = j;
      else i = row4col[j];
      SC[j] = true;
      remaining[index] = remaining[--num_remaining];
    }
    u[cur] += min_val;
    for (int64_t k = 0; k < nr; ++k)
      if (SR[k] && k != cur) u[k] += min_val - shortest[col4row[k]];
    for (int64_t k = 0; k < nc; ++k)
      if (SC[k]) v[k] -= min_val - shortest[k];
    for (int64_t j = sink;;) {
      int64_t k = path[j];
      row4col[j] = k;
      std::swap(col4row[k], j);
      if (k == cur) break;
    }
  }
  Assignment a;
  for (int64_t k = 0; k < nr; ++k) a.rows.push_back(transposed ? col4row[k] : k), a.cols.push_back(transposed ? k : col4row[k]);
  if (transposed) {
    std::vector<size_t> order(nr);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return a.rows[x] < a.rows[y]; });
    Assignment s;
    for (size_t k : order) s.rows.push_back(a.rows[k]), s.cols.push_back(a.cols[k]);
    return s;
  }
  return a;
}
}  // namespace

TEST_CASE("assignment is optimal vs brute force on random problems, both orientations", "[hungarian]") {
  Rng rng(42);
  for (int trial = 0; trial < 400; ++trial) {
    int64_t nr = rng.randint(1, 7), nc = rng.randint(1, 7);
    std::vector<double> c(size_t(nr * nc));
    bool integer = trial % 2 == 0;  // integer costs make many ties
    for (auto& x : c) x = integer ? double(rng.randint(0, 4)) : rng.uniform(-5, 5);
    auto a = linear_sum_assignment(c.data(), nr, nc);
    check_valid(a, nr, nc);
    REQUIRE(total(c, nc, a) == Approx(brute_force(c, nr, nc)).epsilon(1e-12).margin(1e-12));
  }
}

TEST_CASE("assignment equals scipy's algorithm, tie-breaking included, on tie-heavy problems", "[hungarian]") {
  // Few distinct values make equal shortest paths at almost every step, between free and
  // assigned columns, across the 64-column blocks of the scan; inf entries and tall, wide,
  // square shapes included.
  Rng rng(7);
  for (int trial = 0; trial < 600; ++trial) {
    const int64_t nr = rng.randint(1, trial < 500 ? 40 : 200), nc = rng.randint(1, trial < 500 ? 40 : 200);
    const int64_t levels = rng.randint(1, 6);
    std::vector<double> c(size_t(nr * nc));
    for (auto& x : c) x = trial % 3 == 2 ? rng.uniform() : double(rng.randint(0, levels - 1));
    if (trial % 5 == 4)  // some forbidden pairs, leaving every row a finite choice
      for (int64_t k = 0; k < nr * nc; ++k)
        if (k % std::max<int64_t>(nc, nr) != 0 && rng.uniform() < 0.2) c[size_t(k)] = INFINITY;
    INFO("trial " << trial << ": " << nr << " x " << nc);
    Assignment want;
    try {
      want = scipy_lsap(c, nr, nc);
    } catch (const std::runtime_error&) {  // the infinite entries made it infeasible
      REQUIRE_THROWS_WITH(linear_sum_assignment(c.data(), nr, nc), Catch::Contains("infeasible"));
      continue;
    }
    auto got = linear_sum_assignment(c.data(), nr, nc);
    REQUIRE(got.rows == want.rows);
    REQUIRE(got.cols == want.cols);
  }
}

TEST_CASE("assignment edge cases: empty, single, all-equal, infinite entries", "[hungarian]") {
  std::vector<double> none;
  REQUIRE(linear_sum_assignment(none.data(), 5, 0).rows.empty());
  REQUIRE(linear_sum_assignment(none.data(), 0, 5).rows.empty());
  std::vector<double> one{3.0};
  REQUIRE(linear_sum_assignment(one.data(), 1, 1).cols == std::vector<int64_t>{0});
  std::vector<double> same(12, 1.0);
  auto a = linear_sum_assignment(same.data(), 3, 4);
  REQUIRE(a.cols == std::vector<int64_t>{0, 1, 2});  // deterministic tie-break (scipy's)
  const double inf = INFINITY;
  std::vector<double> some_inf{inf, 1, 2, inf};
  auto b = linear_sum_assignment(some_inf.data(), 2, 2);
  REQUIRE(b.cols == std::vector<int64_t>{1, 0});
}

TEST_CASE("NaN, -inf and infeasible costs are errors naming the problem", "[hungarian]") {
  std::vector<double> c{1, NAN, 2, 3};
  REQUIRE_THROWS_WITH(linear_sum_assignment(c.data(), 2, 2, "image 3"),
                      Catch::Contains("image 3") && Catch::Contains("row 0, column 1"));
  c[1] = -INFINITY;
  REQUIRE_THROWS_WITH(linear_sum_assignment(c.data(), 2, 2, "image 1"), Catch::Contains("image 1"));
  std::vector<double> infeasible{INFINITY, INFINITY, 1, 2};
  REQUIRE_THROWS_WITH(linear_sum_assignment(infeasible.data(), 2, 2, "image 7"),
                      Catch::Contains("image 7") && Catch::Contains("infeasible"));
}

#include "detr/io/safetensors.hpp"

TEST_CASE("assignment equals scipy's on stored problems up to 900 x 100", "[hungarian][parity]") {
  auto ref = io::SafetensorsFile::load(std::string(DETR_TEST_DATA_DIR) + "/lsa.safetensors");
  for (std::string name : {"u100x20", "u300x50", "u900x100", "u20x100", "t60x60", "t100x30", "n50x50"}) {
    INFO(name);
    auto c = ref.get<double>(name + ".cost");
    int64_t nr = c.dim(0), nc = c.dim(1);
    auto a = linear_sum_assignment(c.data(), nr, nc);
    std::vector<double> cv = c.to_vector();
    double want = ref.get<double>(name + ".total").item();
    REQUIRE(total(cv, nc, a) == Approx(want).epsilon(1e-6));
    // Same algorithm and tie-breaking as scipy: the very same assignment.
    REQUIRE(a.rows == ref.get<int64_t>(name + ".rows").to_vector());
    REQUIRE(a.cols == ref.get<int64_t>(name + ".cols").to_vector());
  }
}
