#pragma once
// COCO bounding-box evaluation, number for number the same as pycocotools' COCOeval
// (iouType 'bbox', useCats 1, default Params).
//
// Every rule is pycocotools' own, in its order, because AP is sensitive to all of them:
//   - IoU thresholds np.linspace(.5, .95, 10) and recall points np.linspace(0, 1, 101), built
//     the way numpy builds them (i * step + start, last = stop);
//   - per (image, category): detections sorted by score with a *stable* sort (ties keep file
//     order), cut to maxDets[-1] = 100; GT sorted so that ignored ones come last;
//   - a crowd GT's IoU is intersection / detection area, it can absorb any number of
//     detections, and detections matched to it are ignored; GT is ignored when crowd or
//     outside the area range (GT area is the json 'area', detection area is w * h);
//     unmatched detections outside the area range are ignored;
//   - greedy matching by threshold min(t, 1 - 1e-10), preferring non-ignored GT;
//   - accumulation concatenates images in ascending image id, stable-sorts by score,
//     precision = tp / (tp + fp + eps), made monotone from the right, then read at the first
//     index whose recall >= each recall point (np.searchsorted 'left'), 0 past the end;
//   - a summary number is the mean of the entries that are not -1 (-1 when there are none),
//     summed pairwise in numpy's order, so the 12 numbers are bit-identical to pycocotools'.
// Detections whose category is not in the ground truth are ignored, as pycocotools does;
// detections on an image that is not in the ground truth are an error (pycocotools asserts).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "detr/core/parallel.hpp"
#include "detr/core/error.hpp"
#include "detr/data/coco.hpp"
#include "detr/eval/detections.hpp"

namespace detr {

struct CocoEvalResult {
  static constexpr int kT = 10, kR = 101, kA = 4, kM = 3;
  std::array<double, 12> stats{};            // the 12 numbers of COCOeval.summarize()
  std::vector<int64_t> category_ids;         // [K] ascending
  std::vector<std::string> category_names;   // [K]
  std::vector<double> per_category_ap;       // [K] AP@[.5:.95] all areas, 100 dets; -1: no GT
  std::vector<double> precision;             // [T, R, K, A, M] as COCOeval.eval['precision']
  std::vector<double> recall;                // [T, K, A, M]

  // Short names of the 12 numbers, in their order.
  static constexpr std::array<const char*, 12> kStatNames = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                             "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

  // The standard 12-line summary, formatted as pycocotools prints it.
  void print_summary(std::ostream& os) const {
    static const char* kLines[12][4] = {
        {"Average Precision", "(AP)", "0.50:0.95", "   all"}, {"Average Precision", "(AP)", "0.50", "   all"},
        {"Average Precision", "(AP)", "0.75", "   all"},      {"Average Precision", "(AP)", "0.50:0.95", " small"},
        {"Average Precision", "(AP)", "0.50:0.95", "medium"}, {"Average Precision", "(AP)", "0.50:0.95", " large"},
        {"Average Recall", "(AR)", "0.50:0.95", "   all"},    {"Average Recall", "(AR)", "0.50:0.95", "   all"},
        {"Average Recall", "(AR)", "0.50:0.95", "   all"},    {"Average Recall", "(AR)", "0.50:0.95", " small"},
        {"Average Recall", "(AR)", "0.50:0.95", "medium"},    {"Average Recall", "(AR)", "0.50:0.95", " large"}};
    static const int kDets[12] = {100, 100, 100, 100, 100, 100, 1, 10, 100, 100, 100, 100};
    char buf[160];
    for (int i = 0; i < 12; ++i) {
      std::snprintf(buf, sizeof buf, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                    kLines[i][0], kLines[i][1], kLines[i][2], kLines[i][3], kDets[i], stats[i]);
      os << buf;
    }
  }
  void print_per_class(std::ostream& os) const {
    char buf[160];
    for (size_t k = 0; k < category_ids.size(); ++k) {
      std::snprintf(buf, sizeof buf, " AP %-24s (id %3lld) = %0.3f\n", category_names[k].c_str(),
                    (long long)category_ids[k], per_category_ap[k]);
      os << buf;
    }
  }
};

namespace internal {
// pycocotools maskApi.c bbIou for one pair, including the crowd rule.
inline double coco_box_iou(const std::array<double, 4>& d, const std::array<double, 4>& g,
                           bool crowd) {
  double w = std::fmin(d[2] + d[0], g[2] + g[0]) - std::fmax(d[0], g[0]);
  if (w <= 0) return 0;
  double h = std::fmin(d[3] + d[1], g[3] + g[1]) - std::fmax(d[1], g[1]);
  if (h <= 0) return 0;
  double i = w * h;
  double da = d[2] * d[3], ga = g[2] * g[3];
  double u = crowd ? da : da + ga - i;
  return i / u;
}

// evaluateImg's output for one (category, area range, image), detections already in score
// order and cut to 100.
// numpy's pairwise summation (DOUBLE_pairwise_sum: 8 partial sums in blocks of at most 128,
// halves above that), so that a mean is the very double np.mean returns, not just close to it.
inline double numpy_pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}
inline double numpy_mean(const std::vector<double>& v) {
  return (0.0 + numpy_pairwise_sum(v.data(), v.size())) / double(v.size());
}

struct CocoImageEval {
  bool present = false;             // false where pycocotools returns None
  std::vector<double> scores;       // [D]
  std::vector<uint8_t> matched;     // [T, D] matched to a GT with id != 0
  std::vector<uint8_t> ignored;     // [T, D]
  int64_t num_gt_not_ignored = 0;
};
}  // namespace internal

class CocoEvaluator {
 public:
  // Ground truth from a COCO dataset: every image and category of it is evaluated.
  explicit CocoEvaluator(const CocoDataset& gt) : gt_(&gt) {
    // Params: numpy's linspace, bit for bit.
    const double iou_step = (0.95 - 0.5) / 9.0;
    for (int t = 0; t < kT; ++t) iou_thrs_[t] = t == kT - 1 ? 0.95 : double(t) * iou_step + 0.5;
    const double rec_step = 1.0 / 100.0;
    for (int r = 0; r < kR; ++r) rec_thrs_[r] = r == kR - 1 ? 1.0 : double(r) * rec_step;
  }

  CocoEvalResult evaluate(const std::vector<Detection>& dets) const {
    const CocoDataset& gt = *gt_;
    const int64_t K = gt.num_classes();
    // Images in ascending id (p.imgIds = sorted(getImgIds())).
    std::vector<int64_t> order(gt.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return gt.image_info(a).id < gt.image_info(b).id;
    });
    const int64_t I = int64_t(order.size());
    std::vector<int64_t> rank_of_index(I);
    for (int64_t i = 0; i < I; ++i) rank_of_index[order[i]] = i;

    // Detections bucketed per (category, image) in file order.
    std::vector<std::vector<int64_t>> dt_bucket(size_t(K * I));  // [K, I] -> detection indices
    for (size_t n = 0; n < dets.size(); ++n) {
      const Detection& d = dets[n];
      DETR_CHECK(std::isfinite(d.score), "coco eval: detection #" << n << " on image id "
                                                                  << d.image_id
                                                                  << " has a non-finite score");
      for (double v : d.bbox)
        DETR_CHECK(std::isfinite(v), "coco eval: detection #" << n << " on image id "
                                                              << d.image_id
                                                              << " has a non-finite box");
      int64_t idx = -1;
      try {
        idx = gt.index_of_image_id(d.image_id);
      } catch (const Error&) {
        DETR_FAIL("coco eval: detection #" << n << " is on image id " << d.image_id
                                           << ", which is not in the ground truth "
                                           << gt.annotation_file());
      }
      auto cat = label_of(d.category_id);
      if (cat < 0) continue;  // pycocotools evaluates only the GT's categories
      dt_bucket[cat * I + rank_of_index[idx]].push_back(int64_t(n));
    }

    // evalImgs, ordered [K, A, I] as pycocotools lays them out.
    std::vector<internal::CocoImageEval> evals(size_t(K * kA * I));
    parallel_for(K * I, 1, [&](int64_t ki0, int64_t ki1) {
      for (int64_t ki = ki0; ki < ki1; ++ki) {
        const int64_t k = ki / I, i = ki % I;
        std::vector<const CocoAnnotation*> g;
        for (const auto& a : gt.annotations(order[i]))
          if (a.category_id == gt.categories()[k].id) g.push_back(&a);
        evaluate_image(g, dets, dt_bucket[ki], &evals[size_t(k * kA * I + i)], I);
      }
    });

    CocoEvalResult res;
    accumulate(evals, K, I, res);
    summarize(res);
    for (const auto& c : gt.categories()) {
      res.category_ids.push_back(c.id);
      res.category_names.push_back(c.name);
    }
    return res;
  }

  const std::array<double, 10>& iou_thresholds() const { return iou_thrs_; }

 private:
  static constexpr int kT = CocoEvalResult::kT, kR = CocoEvalResult::kR, kA = CocoEvalResult::kA,
                       kM = CocoEvalResult::kM;
  static constexpr int kMaxDets[kM] = {1, 10, 100};
  static constexpr double kAreaRng[kA][2] = {
      {0, 1e10}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, 1e10}};

  int64_t label_of(int64_t category_id) const {
    const auto& cats = gt_->categories();
    auto it = std::lower_bound(cats.begin(), cats.end(), category_id,
                               [](const CocoCategory& c, int64_t id) { return c.id < id; });
    return it != cats.end() && it->id == category_id ? int64_t(it - cats.begin()) : -1;
  }

  // computeIoU + evaluateImg for the four area ranges of one (category, image). `out` points at
  // area range 0; range a is at out + a * I.
  void evaluate_image(const std::vector<const CocoAnnotation*>& gts,
                      const std::vector<Detection>& all_dets, const std::vector<int64_t>& dt_idx,
                      internal::CocoImageEval* out, int64_t I) const {
    if (gts.empty() && dt_idx.empty()) return;  // None for every area range
    // Detections by descending score, stable, at most 100.
    std::vector<int64_t> dt = dt_idx;
    std::stable_sort(dt.begin(), dt.end(), [&](int64_t a, int64_t b) {
      return -all_dets[a].score < -all_dets[b].score;
    });
    if (dt.size() > size_t(kMaxDets[kM - 1])) dt.resize(kMaxDets[kM - 1]);
    const size_t D = dt.size(), G = gts.size();
    std::vector<double> ious(D * G);  // [D, G] in original GT order
    for (size_t d = 0; d < D; ++d)
      for (size_t g = 0; g < G; ++g)
        ious[d * G + g] = internal::coco_box_iou(all_dets[dt[d]].bbox, gts[g]->bbox,
                                                 gts[g]->iscrowd);

    for (int a = 0; a < kA; ++a) {
      internal::CocoImageEval& e = out[a * I];
      e.present = true;
      const double lo = kAreaRng[a][0], hi = kAreaRng[a][1];
      // GT: ignored ones last (stable), ignore = iscrowd or area outside the range.
      std::vector<uint8_t> g_ignore_orig(G);
      for (size_t g = 0; g < G; ++g)
        g_ignore_orig[g] = gts[g]->iscrowd || gts[g]->area < lo || gts[g]->area > hi;
      std::vector<size_t> gind(G);
      std::iota(gind.begin(), gind.end(), 0);
      std::stable_sort(gind.begin(), gind.end(),
                       [&](size_t x, size_t y) { return g_ignore_orig[x] < g_ignore_orig[y]; });
      std::vector<uint8_t> g_ignore(G), g_crowd(G);
      for (size_t g = 0; g < G; ++g) {
        g_ignore[g] = g_ignore_orig[gind[g]];
        g_crowd[g] = gts[gind[g]]->iscrowd;
        e.num_gt_not_ignored += !g_ignore[g];
      }
      e.scores.resize(D);
      for (size_t d = 0; d < D; ++d) e.scores[d] = all_dets[dt[d]].score;
      e.matched.assign(kT * D, 0);
      e.ignored.assign(kT * D, 0);
      std::vector<int64_t> dtm(kT * D, 0);  // matched GT id, 0 = none (pycocotools' dtm)
      if (D > 0 && G > 0) {
        std::vector<uint8_t> gtm(G);
        for (int t = 0; t < kT; ++t) {
          std::fill(gtm.begin(), gtm.end(), 0);
          for (size_t d = 0; d < D; ++d) {
            double iou = std::min(iou_thrs_[t], 1 - 1e-10);
            int64_t m = -1;
            for (size_t g = 0; g < G; ++g) {
              if (gtm[g] && !g_crowd[g]) continue;
              if (m > -1 && g_ignore[m] == 0 && g_ignore[g] == 1) break;
              double v = ious[d * G + gind[g]];
              if (v < iou) continue;
              iou = v;
              m = int64_t(g);
            }
            if (m == -1) continue;
            e.ignored[t * D + d] = g_ignore[m];
            dtm[t * D + d] = gts[gind[m]]->id;
            gtm[m] = 1;  // pycocotools stores the detection id (>= 1): always "matched"
          }
        }
      }
      for (int t = 0; t < kT; ++t)
        for (size_t d = 0; d < D; ++d) {
          const auto& bb = all_dets[dt[d]].bbox;
          double area = bb[2] * bb[3];
          bool out_of_range = area < lo || area > hi;
          e.matched[t * D + d] = dtm[t * D + d] != 0;
          e.ignored[t * D + d] = e.ignored[t * D + d] || (dtm[t * D + d] == 0 && out_of_range);
        }
    }
  }

  void accumulate(const std::vector<internal::CocoImageEval>& evals, int64_t K, int64_t I,
                  CocoEvalResult& res) const {
    res.precision.assign(size_t(kT * kR * K * kA * kM), -1.0);
    res.recall.assign(size_t(kT * K * kA * kM), -1.0);
    auto P = [&](int t, int r, int64_t k, int a, int m) -> double& {
      return res.precision[(((size_t(t) * kR + r) * K + k) * kA + a) * kM + m];
    };
    auto Rc = [&](int t, int64_t k, int a, int m) -> double& {
      return res.recall[((size_t(t) * K + k) * kA + a) * kM + m];
    };
    const double eps = 2.220446049250313e-16;  // np.spacing(1)
    // Detections and their order are the same for every area range and maxDets (only the
    // ignore flags differ), and a stable sort of a subset is the subset of the stable sort:
    // so each category sorts once and maxDets 1 / 10 filter that order.
    parallel_for(K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        struct Item {
          double score;
          int64_t image;  // rank in ascending image id
          int d;          // rank within its image
        };
        std::vector<Item> items;
        for (int64_t i = 0; i < I; ++i) {
          const auto& e = evals[size_t(k * kA * I + i)];
          for (int d = 0; d < int(e.scores.size()); ++d) items.push_back({e.scores[d], i, d});
        }
        std::stable_sort(items.begin(), items.end(),
                         [](const Item& x, const Item& y) { return -x.score < -y.score; });
        // Positions (in sorted order) of the detections kept under each maxDets.
        std::array<std::vector<uint32_t>, kM> kept;
        for (int m = 0; m < kM; ++m)
          for (size_t j = 0; j < items.size(); ++j)
            if (items[j].d < kMaxDets[m]) kept[m].push_back(uint32_t(j));
        const size_t n_all = items.size();
        std::vector<uint8_t> code(kT * n_all);  // [T, n_all]: 0 ignored, 1 tp, 2 fp
        std::vector<double> rc, pr;
        for (int a = 0; a < kA; ++a) {
          const internal::CocoImageEval* ev = &evals[size_t((k * kA + a) * I)];  // [I]
          int64_t npig = 0;
          bool any = false;
          for (int64_t i = 0; i < I; ++i) {
            any |= ev[i].present;
            npig += ev[i].num_gt_not_ignored;
          }
          if (!any || npig == 0) continue;
          for (size_t j = 0; j < n_all; ++j) {
            const auto& e = ev[items[j].image];
            const size_t D = e.scores.size();
            for (int t = 0; t < kT; ++t) {
              const size_t at = size_t(t) * D + size_t(items[j].d);
              code[t * n_all + j] = e.ignored[at] ? 0 : (e.matched[at] ? 1 : 2);
            }
          }
          for (int m = 0; m < kM; ++m) {
            const auto& keep = kept[m];
            const size_t nd = keep.size();
            rc.resize(nd);
            pr.resize(nd);
            for (int t = 0; t < kT; ++t) {
              const uint8_t* c = code.data() + t * n_all;  // [nd], may be empty
              double tp_sum = 0, fp_sum = 0;
              for (size_t j = 0; j < nd; ++j) {
                const uint8_t v = c[keep[j]];
                tp_sum += v == 1;
                fp_sum += v == 2;
                rc[j] = tp_sum / double(npig);
                pr[j] = tp_sum / (fp_sum + tp_sum + eps);
              }
              Rc(t, k, a, m) = nd ? rc[nd - 1] : 0.0;
              for (size_t j = nd; j-- > 1;)
                if (pr[j] > pr[j - 1]) pr[j - 1] = pr[j];
              size_t j = 0;
              for (int r = 0; r < kR; ++r) {
                while (j < nd && rc[j] < rec_thrs_[r]) ++j;  // searchsorted 'left'
                if (j >= nd) {
                  for (int r2 = r; r2 < kR; ++r2) P(t, r2, k, a, m) = 0.0;
                  break;
                }
                P(t, r, k, a, m) = pr[j];
              }
            }
          }
        }
      }
    });
  }

  void summarize(CocoEvalResult& res) const {
    const int64_t K = int64_t(res.precision.size() / (kT * kR * kA * kM));
    std::vector<double> sel;
    // np.mean(s[s > -1]) over entries visited in numpy's C order; -1 when none.
    auto mean_selected = [&]() { return sel.empty() ? -1.0 : internal::numpy_mean(sel); };
    // iou_index < 0: all thresholds.
    auto ap = [&](int iou_index, int a, int m) {
      sel.clear();
      for (int t = 0; t < kT; ++t) {
        if (iou_index >= 0 && t != iou_index) continue;
        for (int r = 0; r < kR; ++r)
          for (int64_t k = 0; k < K; ++k) {
            double v = res.precision[(((size_t(t) * kR + r) * K + k) * kA + a) * kM + m];
            if (v > -1) sel.push_back(v);
          }
      }
      return mean_selected();
    };
    auto ar = [&](int a, int m) {
      sel.clear();
      for (int t = 0; t < kT; ++t)
        for (int64_t k = 0; k < K; ++k) {
          double v = res.recall[((size_t(t) * K + k) * kA + a) * kM + m];
          if (v > -1) sel.push_back(v);
        }
      return mean_selected();
    };
    // np.where(iouThr == p.iouThrs): exact comparison, as pycocotools.
    auto iou_index = [&](double thr) {
      for (int t = 0; t < kT; ++t)
        if (iou_thrs_[t] == thr) return t;
      return kT;  // no match: an empty selection, summarised as -1
    };
    res.stats = {ap(-1, 0, 2), ap(iou_index(.5), 0, 2), ap(iou_index(.75), 0, 2), ap(-1, 1, 2),
                 ap(-1, 2, 2), ap(-1, 3, 2), ar(0, 0), ar(0, 1), ar(0, 2), ar(1, 2), ar(2, 2),
                 ar(3, 2)};
    res.per_category_ap.assign(size_t(K), -1.0);
    for (int64_t k = 0; k < K; ++k) {
      sel.clear();
      for (int t = 0; t < kT; ++t)
        for (int r = 0; r < kR; ++r) {
          double v = res.precision[(((size_t(t) * kR + r) * K + k) * kA + 0) * kM + 2];
          if (v > -1) sel.push_back(v);
        }
      res.per_category_ap[k] = mean_selected();
    }
  }

  const CocoDataset* gt_;
  std::array<double, 10> iou_thrs_{};
  std::array<double, 101> rec_thrs_{};
};

}  // namespace detr
