#pragma once
// Exact rectangular linear sum assignment: the shortest augmenting path algorithm of
// Jonker-Volgenant as formulated by Crouse (2016), the algorithm behind
// scipy.optimize.linear_sum_assignment, including its tie-breaking, so both return the same
// optimal assignment. Rows may outnumber columns or the reverse; every row (or every column,
// whichever is fewer) is assigned. Costs are processed in double. NaN or a cost that makes
// the problem infeasible (+inf everywhere a row could go) is a detr::Error naming the problem
// (the caller passes "image 3", say), never a hang.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "detr/core/error.hpp"

namespace detr {

struct Assignment {
  std::vector<int64_t> rows;  // sorted ascending
  std::vector<int64_t> cols;  // cols[k] is assigned to rows[k]
};

namespace internal {

// One augmenting path from free row i; returns the sink column or -1 when infeasible.
inline int64_t augmenting_path(int64_t nc, const double* cost, const std::vector<double>& u,
                               const std::vector<double>& v, std::vector<int64_t>& path,
                               const std::vector<int64_t>& row4col, std::vector<double>& shortest,
                               int64_t i, std::vector<char>& SR, std::vector<char>& SC,
                               std::vector<int64_t>& remaining, double& min_val) {
  const double inf = std::numeric_limits<double>::infinity();
  min_val = 0;
  int64_t num_remaining = nc;
  for (int64_t it = 0; it < nc; ++it) remaining[it] = nc - it - 1;  // scipy's scan order
  std::fill(SR.begin(), SR.end(), 0);
  std::fill(SC.begin(), SC.end(), 0);
  std::fill(shortest.begin(), shortest.end(), inf);
  int64_t sink = -1;
  while (sink == -1) {
    int64_t index = -1;
    double lowest = inf;
    SR[i] = 1;
    const double* row = cost + i * nc;
    for (int64_t it = 0; it < num_remaining; ++it) {
      int64_t j = remaining[it];
      double r = min_val + row[j] - u[i] - v[j];
      if (r < shortest[j]) {
        path[j] = i;
        shortest[j] = r;
      }
      // Among equal reduced costs prefer a free column: it ends the path sooner.
      if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == -1)) {
        lowest = shortest[j];
        index = it;
      }
    }
    min_val = lowest;
    if (min_val == inf) return -1;
    int64_t j = remaining[index];
    if (row4col[j] == -1) sink = j;
    else i = row4col[j];
    SC[j] = 1;
    remaining[index] = remaining[--num_remaining];
  }
  return sink;
}

}  // namespace internal

// cost: row-major [nr, nc]. `what` names the problem in error messages.
inline Assignment linear_sum_assignment(const double* cost_in, int64_t nr, int64_t nc,
                                        const std::string& what = "cost matrix") {
  DETR_CHECK(nr >= 0 && nc >= 0, "linear_sum_assignment: negative size " << nr << " x " << nc);
  Assignment out;
  if (nr == 0 || nc == 0) return out;
  for (int64_t k = 0; k < nr * nc; ++k) {
    DETR_CHECK(!std::isnan(cost_in[k]) && cost_in[k] != -std::numeric_limits<double>::infinity(),
               "linear_sum_assignment: " << what << " [" << nr << " x " << nc << "] has an invalid entry "
                                         << cost_in[k] << " at row " << k / nc << ", column " << k % nc);
  }
  // Work on the orientation with no more rows than columns.
  const bool transposed = nc < nr;
  std::vector<double> cost(size_t(nr * nc));
  if (transposed) {
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < nc; ++c) cost[size_t(c * nr + r)] = cost_in[r * nc + c];
    std::swap(nr, nc);
  } else {
    std::copy(cost_in, cost_in + nr * nc, cost.begin());
  }
  std::vector<double> u(nr, 0), v(nc, 0), shortest(nc);
  std::vector<int64_t> path(nc, -1), col4row(nr, -1), row4col(nc, -1), remaining(nc);
  std::vector<char> SR(nr), SC(nc);
  for (int64_t cur = 0; cur < nr; ++cur) {
    double min_val;
    int64_t sink = internal::augmenting_path(nc, cost.data(), u, v, path, row4col, shortest, cur, SR, SC,
                                             remaining, min_val);
    DETR_CHECK(sink >= 0, "linear_sum_assignment: " << what << " is infeasible (every assignment of row "
                                                    << cur << " has infinite cost)");
    u[cur] += min_val;
    for (int64_t i = 0; i < nr; ++i)
      if (SR[i] && i != cur) u[i] += min_val - shortest[col4row[i]];
    for (int64_t j = 0; j < nc; ++j)
      if (SC[j]) v[j] -= min_val - shortest[j];
    for (int64_t j = sink;;) {  // augment along the path back to `cur`
      int64_t i = path[j];
      row4col[j] = i;
      std::swap(col4row[i], j);
      if (i == cur) break;
    }
  }
  out.rows.resize(nr);
  out.cols.resize(nr);
  if (!transposed) {
    std::iota(out.rows.begin(), out.rows.end(), 0);
    out.cols = col4row;
  } else {  // rows of the original are col4row; sort by them as scipy does
    std::vector<int64_t> order(nr);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return col4row[a] < col4row[b]; });
    for (int64_t k = 0; k < nr; ++k) {
      out.rows[k] = col4row[order[k]];
      out.cols[k] = order[k];
    }
  }
  return out;
}

}  // namespace detr
