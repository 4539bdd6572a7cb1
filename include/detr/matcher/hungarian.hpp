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
#include <cstdint>
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

// scipy's augmenting_path scans a list of the remaining columns, starting from the reversed
// order and swap-removing each column it settles, and breaks ties between equal shortest paths
// by position in that list. We scan the columns in their natural order instead, so that the
// scan is contiguous and vectorises, and recover the list only when the minimum is not unique.
// A settled column gets shortest = +inf and v = -inf for the rest of the path search (its
// reduced cost is then +inf, never an improvement, never the minimum; its true values are kept
// in `settled`), which takes the membership test out of the scan.
struct LsaWorkspace {
  static constexpr int64_t block = 64;  // columns per block minimum
  struct Settled {
    int64_t col, row;  // row: the predecessor of col on the shortest path tree
    double shortest, v;
  };
  std::vector<double> u, v, shortest, block_min;
  // path[j] = (search << 32) | row that last improved column j after the search's first scan
  // (the first scan's row is the search's own row: not stored, saving a store per column).
  std::vector<int64_t> path, col4row, row4col, remaining, position;
  std::vector<Settled> settled;
};

inline LsaWorkspace& lsa_workspace() {
  thread_local LsaWorkspace ws;
  return ws;
}

// Row i's reduced costs relax the shortest paths of the unsettled columns; returns the minimum
// and leaves the minimum of each block of columns in block_min. The first scan of a search
// starts from shortest = +inf everywhere (scipy's fill), i.e. takes every reduced cost (an
// infinite one leaves the column unreachable either way). Row i's entry j is row[j * stride]
// (stride 1 unless the caller's matrix is tall: its columns are then our rows).
template <bool First, bool Strided>
inline double relax_row(LsaWorkspace& ws, const double* __restrict row, int64_t col_stride, int64_t nc, int64_t tag,
                        double min_val, double ui) {
  const int64_t stride = Strided ? col_stride : 1;
  const double* __restrict v = ws.v.data();
  double* __restrict shortest = ws.shortest.data();
  int64_t* __restrict path = ws.path.data();
  double lowest = std::numeric_limits<double>::infinity();
  for (int64_t b0 = 0, b = 0; b0 < nc; b0 += LsaWorkspace::block, ++b) {
    const int64_t end = std::min(b0 + LsaWorkspace::block, nc);
    double m = std::numeric_limits<double>::infinity();
#pragma omp simd reduction(min : m)
    for (int64_t j = b0; j < end; ++j) {
      const double r = min_val + row[j * stride] - ui - v[j];  // scipy's operation order
      double s = r;
      if constexpr (!First) {
        const bool better = r < shortest[j];
        s = better ? r : shortest[j];
        path[j] = better ? tag : path[j];
      }
      shortest[j] = s;
      m = s < m ? s : m;
    }
    ws.block_min[size_t(b)] = m;
    lowest = std::min(lowest, m);
  }
  return lowest;
}

// The column scipy settles among the unsettled ones at shortest == lowest: the last free one in
// its list order if any is free, else the first (what its running `<` / `== && free` test keeps).
inline int64_t break_tie(LsaWorkspace& ws, int64_t nc, double lowest) {
  std::vector<int64_t>& rem = ws.remaining;
  std::vector<int64_t>& pos = ws.position;
  rem.resize(size_t(nc));
  pos.resize(size_t(nc));
  for (int64_t k = 0; k < nc; ++k) rem[k] = nc - 1 - k, pos[nc - 1 - k] = k;
  int64_t n = nc;
  for (const auto& s : ws.settled) {
    const int64_t p = pos[s.col], last = rem[--n];
    rem[p] = last;
    pos[last] = p;
  }
  int64_t best = -1;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = rem[k];
    if (ws.shortest[j] == lowest && (best == -1 || ws.row4col[j] == -1)) best = j;
  }
  return best;
}

// The unsettled column at shortest == lowest, when unique, else scipy's choice among them.
inline int64_t argmin_column(LsaWorkspace& ws, int64_t nc, double lowest) {
  const double* __restrict shortest = ws.shortest.data();
  int64_t count = 0, j = -1;
  for (int64_t b0 = 0, b = 0; b0 < nc; b0 += LsaWorkspace::block, ++b) {
    if (ws.block_min[size_t(b)] != lowest) continue;
    const int64_t end = std::min(b0 + LsaWorkspace::block, nc);
#pragma omp simd reduction(+ : count) reduction(max : j)
    for (int64_t k = b0; k < end; ++k) {
      const bool at_min = shortest[k] == lowest;
      count += at_min;
      j = std::max(j, at_min ? k : int64_t(-1));
    }
  }
  return count == 1 ? j : break_tie(ws, nc, lowest);
}

// Solves cost [nr, nc] (entry (i, j) at cost[i * row_stride + j * col_stride], nr <= nc, no NaN
// or -inf) into ws.col4row / ws.row4col.
template <bool Strided>
void solve_lsa(LsaWorkspace& ws, const double* cost, int64_t row_stride, int64_t col_stride, int64_t nr, int64_t nc,
               const std::string& what) {
  const double inf = std::numeric_limits<double>::infinity();
  DETR_CHECK(nr < (int64_t(1) << 31), "linear_sum_assignment: " << what << " has " << nr << " rows on its short side");
  ws.u.assign(size_t(nr), 0.0);
  ws.v.assign(size_t(nc), 0.0);
  ws.shortest.resize(size_t(nc));
  ws.block_min.resize(size_t((nc + LsaWorkspace::block - 1) / LsaWorkspace::block));
  ws.path.assign(size_t(nc), -1);
  ws.col4row.assign(size_t(nr), -1);
  ws.row4col.assign(size_t(nc), -1);
  double *u = ws.u.data(), *v = ws.v.data(), *shortest = ws.shortest.data();
  int64_t *path = ws.path.data(), *col4row = ws.col4row.data(), *row4col = ws.row4col.data();
  for (int64_t cur = 0; cur < nr; ++cur) {
    ws.settled.clear();
    int64_t sink = -1;
    double min_val = relax_row<true, Strided>(ws, cost + cur * row_stride, col_stride, nc, 0, 0.0, u[cur]);
    for (;;) {
      DETR_CHECK(min_val != inf, "linear_sum_assignment: " << what << " is infeasible (every assignment of row "
                                                           << cur << " has infinite cost)");
      const int64_t j = argmin_column(ws, nc, min_val);
      const int64_t pred = (path[j] >> 32) == cur ? (path[j] & 0xffffffff) : cur;
      ws.settled.push_back({j, pred, shortest[j], v[j]});
      shortest[j] = inf;
      v[j] = -inf;
      if (row4col[j] == -1) {
        sink = j;
        break;
      }
      const int64_t i = row4col[j];
      min_val = relax_row<false, Strided>(ws, cost + i * row_stride, col_stride, nc, (cur << 32) | i, min_val, u[i]);
    }
    // Dual update (u of the rows on the search tree, v of its columns), then augment along the
    // tree from the sink back to `cur`.
    u[cur] += min_val;
    for (const auto& s : ws.settled) {
      v[s.col] = s.v - (min_val - s.shortest);
      if (s.col != sink) u[row4col[s.col]] += min_val - s.shortest;
      path[s.col] = (cur << 32) | s.row;
    }
    for (int64_t j = sink;;) {
      const int64_t r = path[j] & 0xffffffff;
      row4col[j] = r;
      std::swap(col4row[r], j);
      if (r == cur) break;
    }
  }
}

// Solves cost [nr, nc] (strided as in solve_lsa, nr <= nc, entries checked), the transpose of
// the caller's problem when `transposed`, and returns the pairs in the caller's orientation,
// sorted by row.
inline Assignment solve_oriented(const double* cost, int64_t row_stride, int64_t col_stride, int64_t nr, int64_t nc,
                                 bool transposed, const std::string& what) {
  LsaWorkspace& ws = lsa_workspace();
  if (col_stride == 1) solve_lsa<false>(ws, cost, row_stride, 1, nr, nc, what);
  else solve_lsa<true>(ws, cost, row_stride, col_stride, nr, nc, what);
  Assignment out;
  out.rows.resize(size_t(nr));
  out.cols.resize(size_t(nr));
  if (!transposed) {
    std::iota(out.rows.begin(), out.rows.end(), 0);
    std::copy(ws.col4row.begin(), ws.col4row.end(), out.cols.begin());
  } else {  // the caller's rows are our columns: walking them in order sorts the pairs
    size_t k = 0;
    for (int64_t j = 0; j < nc; ++j)
      if (ws.row4col[j] != -1) out.rows[k] = j, out.cols[k++] = ws.row4col[j];
  }
  return out;
}

}  // namespace internal

// cost: row-major [nr, nc]. `what` names the problem in error messages.
inline Assignment linear_sum_assignment(const double* cost_in, int64_t nr, int64_t nc,
                                        const std::string& what = "cost matrix") {
  DETR_CHECK(nr >= 0 && nc >= 0, "linear_sum_assignment: negative size " << nr << " x " << nc);
  if (nr == 0 || nc == 0) return {};
  const double ninf = -std::numeric_limits<double>::infinity();
  const int64_t n = nr * nc;
  int invalid = 0;
#pragma omp simd reduction(| : invalid)
  for (int64_t k = 0; k < n; ++k) invalid |= !(cost_in[k] > ninf);  // NaN or -inf
  if (invalid) {
    for (int64_t k = 0; k < n; ++k)
      DETR_CHECK(cost_in[k] > ninf, "linear_sum_assignment: " << what << " [" << nr << " x " << nc << "] has an invalid entry "
                                                              << cost_in[k] << " at row " << k / nc << ", column " << k % nc);
  }
  if (nr <= nc) return internal::solve_oriented(cost_in, nc, 1, nr, nc, false, what);
  // Tall: augment over the short side as scipy does, reading the columns in place (each is
  // scanned about once; a transposed copy costs more than these strided reads).
  return internal::solve_oriented(cost_in, 1, nc, nc, nr, true, what);
}

}  // namespace detr
