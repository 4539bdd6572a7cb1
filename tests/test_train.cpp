// The training-loop pieces of include/detr/train and data/coco_folder.hpp: progress lines,
// the metrics log, charts, COCO folders and subsets, per-class AP, and train_one_epoch /
// evaluate on a tiny Detector written here.
#include "detr/train/chart.hpp"
#include "detr/train/metrics_log.hpp"
#include "detr/train/progress.hpp"
#include "detr/train/trainer.hpp"

#include <sstream>

#include "detr/data/coco_folder.hpp"
#include "detr/data/fashion_det.hpp"
#include "detr/data/transforms.hpp"
#include "detr/nn/linear.hpp"
#include "detr/optim/adamw.hpp"
#include "data_helpers.hpp"
#include "helpers.hpp"

using namespace detr;
using json = nlohmann::json;

namespace {
size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("format_duration and format_progress", "[train][progress]") {
  REQUIRE(format_duration(0) == "0:00");
  REQUIRE(format_duration(59.6) == "1:00");
  REQUIRE(format_duration(3725) == "1:02:05");
  REQUIRE(format_duration(NAN) == "--:--");
  ProgressStatus s;
  s.label = "epoch 3/50";
  s.done = 14;
  s.total = 40;
  s.images = 112;
  s.elapsed = 28;
  s.loss = 2.34111;
  s.mean_loss = 2.51234;
  REQUIRE(format_progress(s) ==
          "epoch 3/50 [#######.............] 14/40  loss 2.3411 (avg 2.5123)  4.0 img/s  ETA 0:52");
  s.done = 40;
  s.loss = s.mean_loss = NAN;  // an evaluation pass: no loss column
  REQUIRE(format_progress(s, 4) == "epoch 3/50 [####] 40/40  4.0 img/s  took 0:28");
}

TEST_CASE("ProgressBar prints every N percent to a log, redraws one line on a TTY", "[train][progress]") {
  std::ostringstream log;
  ProgressBar bar("e", 20, log, false, 25);
  for (int i = 0; i < 20; ++i) bar.step(2, 1.0, double(i + 1));
  bar.finish();
  const std::string out = log.str();
  REQUIRE(count(out, "\n") == 4);  // at 25, 50, 75, 100 %
  REQUIRE(count(out, "\r") == 0);
  REQUIRE(out.find(" 5/20") != std::string::npos);
  REQUIRE(out.find("20/20") != std::string::npos);
  REQUIRE(bar.status().images == 40);

  std::ostringstream early;  // stopped before the end (--max-steps): finish() prints the last line
  ProgressBar partial("e", 20, early, false, 50);
  for (int i = 0; i < 3; ++i) partial.step(1, 1.0, 1.0);
  partial.finish();
  REQUIRE(count(early.str(), "\n") == 1);
  REQUIRE(early.str().find(" 3/20") != std::string::npos);

  std::ostringstream tty;
  ProgressBar redraw("e", 3, tty, true);
  for (int i = 0; i < 3; ++i) redraw.step(1, 0.5, 1.0);
  redraw.finish();
  REQUIRE(count(tty.str(), "\r") == 3);
  REQUIRE(count(tty.str(), "\n") == 1);
  REQUIRE(tty.str().back() == '\n');
}

TEST_CASE("MetricsLog round-trips records and drops redone epochs on resume", "[train][metrics]") {
  test::TempDir dir;
  const std::string path = dir / "metrics.jsonl";
  {
    MetricsLog log(path);
    for (int e = 1; e <= 3; ++e) log.write({{"epoch", e}, {"loss", 1.0 / e}, {"ap", {{"Bag", 0.5}}}});
  }
  auto recs = read_metrics_log(path);
  REQUIRE(recs.size() == 3);
  REQUIRE(recs[2]["epoch"] == 3);
  REQUIRE(recs[1]["loss"].get<double>() == 0.5);
  REQUIRE(recs[0]["ap"]["Bag"].get<double>() == 0.5);
  {
    MetricsLog log = MetricsLog::resume(path, 3);  // resumed from epoch 2's checkpoint
    log.write({{"epoch", 3}, {"loss", 0.25}});
  }
  recs = read_metrics_log(path);
  REQUIRE(recs.size() == 3);
  REQUIRE(recs[2]["loss"].get<double>() == 0.25);
  MetricsLog::resume(dir / "fresh.jsonl", 1).write({{"epoch", 1}});  // no file yet: a new log
  REQUIRE(read_metrics_log(dir / "fresh.jsonl").size() == 1);

  test::write_text(dir / "bad.jsonl", "{\"epoch\": 1}\n\n{\"epoch\": 2\n");
  const std::string err = error_of([&] { read_metrics_log(dir / "bad.jsonl"); });
  REQUIRE(err.find("bad.jsonl line 3 is not valid json") != std::string::npos);
  REQUIRE(error_of([&] { MetricsLog(dir / "x.jsonl").write(json::array()); }).find("must be a json object") !=
          std::string::npos);
}

TEST_CASE("write_chart writes a PNG of the requested size with the series drawn", "[train][chart]") {
  test::TempDir dir;
  const std::array<uint8_t, 3> red = {230, 25, 75}, blue = {0, 130, 200};
  std::vector<ChartPanel> panels = {
      {"train loss", {{"loss", {1, 2, 3, 4}, {30, 22.5, 19, 18.2}, red}}},
      {"val AP", {{"AP", {1, 2, 4}, {0.01, NAN, 0.12}, blue}}},  // a gap: not evaluated at epoch 2
      {"nothing yet", {{"AP50", {}, {}, blue}}}};
  write_chart(dir / "chart.png", panels, 320, 150);
  const Image im = read_image(dir / "chart.png");
  REQUIRE(im.width() == 320);
  REQUIRE(im.height() == 450);
  auto pixels_of = [&](std::array<uint8_t, 3> c, int64_t y0, int64_t y1) {
    int64_t n = 0;
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = 0; x < im.width(); ++x) n += std::equal(c.begin(), c.end(), im.at(y, x));
    return n;
  };
  REQUIRE(pixels_of(red, 0, 150) > 200);    // the loss line, its dots and its legend swatch
  REQUIRE(pixels_of(blue, 150, 300) > 50);  // two dots and the legend swatch, no line across the gap
  REQUIRE(pixels_of(red, 150, 450) == 0);

  REQUIRE(internal::nice_ticks(0, 1, 5) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1});
  REQUIRE(internal::nice_ticks(18.2, 30, 5) == std::vector<double>{15, 20, 25, 30});
  REQUIRE(internal::nice_ticks(1, 3, 8, 1) == std::vector<double>{1, 2, 3});
  REQUIRE(error_of([&] { render_chart({{"p", {{"s", {1, 2}, {1}}}}}); }).find("2 x values and 1 y values") !=
          std::string::npos);
}

TEST_CASE("per-class AP on a hand-computed case", "[train][coco_eval]") {
  // Class A: two objects; a perfect box (0.9) and a false positive (0.8), the second object is
  // missed: precision 1 up to recall 0.5, so 51 of the 101 recall points score 1 at every IoU
  // threshold. Class B: one object, one box with IoU 0.62: a hit at IoU .50, .55, .60 only.
  // Class C: no objects, no detections: -1.
  json gt = {{"categories", {{{"id", 1}, {"name", "A"}}, {{"id", 2}, {"name", "B"}}, {{"id", 5}, {"name", "C"}}}},
             {"images", {{{"id", 1}, {"file_name", "1.png"}, {"width", 100}, {"height", 100}}}},
             {"annotations",
              {{{"id", 1}, {"image_id", 1}, {"category_id", 1}, {"bbox", {10, 10, 20, 20}}},
               {{"id", 2}, {"image_id", 1}, {"category_id", 1}, {"bbox", {60, 60, 20, 20}}},
               {{"id", 3}, {"image_id", 1}, {"category_id", 2}, {"bbox", {0, 0, 10, 10}}}}}};
  CocoDataset data = CocoDataset::from_json(gt, "hand.json");
  std::vector<Detection> dets = {{1, 1, {10, 10, 20, 20}, 0.9}, {1, 1, {40, 0, 10, 10}, 0.8}, {1, 2, {0, 0, 10, 6.2}, 0.7}};
  CocoEvalResult r = CocoEvaluator(data).evaluate(dets);
  REQUIRE(r.category_names == std::vector<std::string>{"A", "B", "C"});
  REQUIRE(r.per_category_ap[0] == Approx(51.0 / 101.0).epsilon(1e-12));
  REQUIRE(r.per_category_ap[1] == Approx(0.3).epsilon(1e-12));
  REQUIRE(r.per_category_ap[2] == -1);
  REQUIRE(r.stats[0] == Approx((51.0 / 101.0 + 0.3) / 2).epsilon(1e-12));
  std::ostringstream table;
  r.print_per_class(table);
  REQUIRE(table.str().find(" AP B                        (id   2) = 0.300") != std::string::npos);
}

TEST_CASE("COCO folders: both naming schemes, subsets keep their own annotations", "[train][coco_folder]") {
  test::TempDir dir;
  const std::string err = error_of([&] { find_coco_split(dir.str(), "train"); });
  REQUIRE(err.find("has no COCO 'train' split") != std::string::npos);
  REQUIRE(err.find("instances_train2017.json") != std::string::npos);
  REQUIRE(error_of([&] { find_coco_split(dir / "missing", "val"); }).find("missing does not exist") !=
          std::string::npos);

  std::filesystem::create_directories(dir / "annotations");
  std::filesystem::create_directories(dir / "val2017");
  json doc = {{"categories", {{{"id", 3}, {"name", "x"}}}},
              {"images",
               {{{"id", 7}, {"file_name", "a.png"}, {"width", 10}, {"height", 10}},
                {{"id", 8}, {"file_name", "b.png"}, {"width", 10}, {"height", 10}}}},
              {"annotations",
               {{{"id", 1}, {"image_id", 8}, {"category_id", 3}, {"bbox", {1, 1, 2, 2}}},
                {{"id", 2}, {"image_id", 7}, {"category_id", 3}, {"bbox", {1, 1, 3, 3}}},
                {{"id", 3}, {"image_id", 7}, {"category_id", 3}, {"bbox", {5, 5, 3, 3}}}}}};
  test::write_text(dir / "annotations/instances_val2017.json", doc.dump());
  REQUIRE(find_coco_split(dir.str(), "val").images == dir / "val2017");
  CocoDataset all = load_coco_split(dir.str(), "val");
  REQUIRE(all.size() == 2);
  CocoDataset first = load_coco_split(dir.str(), "val", 1);
  REQUIRE(first.size() == 1);
  REQUIRE(first.image_info(0).id == 7);
  REQUIRE(first.annotations(0).size() == 2);
  REQUIRE(first.image_path(0) == dir / "val2017/a.png");
}

namespace {
// A throwaway detector: every image's mean colour through two linear heads. Small enough to
// train in a test, and a real Detector (forward from images, typed output, criterion settings).
template <int Q, int C>
struct MeanColourDetector {
  using Scalar = float;
  static constexpr int num_classes = C, num_queries = Q;
  Linear<3, Q*(C + 1)> class_head;
  Linear<3, Q * 4> box_head;

  static CriterionConfig criterion_config() {
    CriterionConfig c;
    c.num_classes = C;
    return c;
  }
  static MatcherConfig matcher_config() { return {}; }
  void init(Rng& rng) {
    class_head.init(rng);
    box_head.init(rng);
  }
  template <class V>
  void visit(V& v) {
    v.child("class_head", class_head);
    v.child("box_head", box_head);
  }
  DetectorOutput<float> forward(const Var<float>& images, const Tensor<uint8_t>&) {  // [B, 3, H, W]
    const int64_t B = images.dim(0);
    Var<float> colour = mean(images, std::vector<int>{2, 3});  // [B, 3]
    DetectorOutput<float> out;
    out.layers.push_back({reshape(class_head.forward(colour), {B, Q, C + 1}),
                          sigmoid(reshape(box_head.forward(colour), {B, Q, 4}))});
    return out;
  }
};
}  // namespace

TEST_CASE("train_one_epoch lowers the loss, honours max_steps; evaluate scores every image", "[train][trainer]") {
  using Model = MeanColourDetector<8, 10>;
  static_assert(Detector<Model>);
  test::TempDir dir;
  FashionDetConfig cfg;
  cfg.train_images = 8;
  cfg.val_images = 4;
  make_fashion_det(dir.str(), cfg);
  const CocoDataset train_set = load_coco_split(dir.str(), "train"), val_set = load_coco_split(dir.str(), "val");
  auto transform = [](const Sample& s, Rng& rng) { return normalize(random_resize({64}, 128)(s, rng)); };
  DataLoader<CocoDataset> train_loader(train_set, transform,
                                       {.batch_size = 4, .shuffle = true, .seed = 1, .num_workers = 1});
  DataLoader<CocoDataset> val_loader(val_set, transform,
                                     {.batch_size = 3, .shuffle = false, .seed = 1, .num_workers = 0});

  Rng rng(3);
  Model model;
  model.init(rng);
  SetCriterion<float> criterion(Model::criterion_config(), HungarianMatcher<float>(Model::matcher_config()));
  AdamWOptions o;
  o.lr = 1e-2;
  AdamW<float> opt(named_parameters(model), o);

  std::ostringstream log;
  ProgressBar bar("epoch 1", 2, log, false);
  EpochStats first = train_one_epoch(model, criterion, opt, train_loader, 0, {}, &bar);
  REQUIRE(first.steps == 2);
  REQUIRE(first.images == 8);
  REQUIRE(first.lr == 1e-2);
  REQUIRE(first.grad_norm > 0);
  REQUIRE(std::isfinite(first.loss));
  REQUIRE(first.loss > first.loss_ce);
  REQUIRE(bar.status().done == 2);
  EpochStats last;
  for (int e = 1; e < 30; ++e) last = train_one_epoch(model, criterion, opt, train_loader, e);
  REQUIRE(last.loss < first.loss);

  EpochStats capped = train_one_epoch(model, criterion, opt, train_loader, 30, {.clip_max_norm = 0, .max_steps = 1});
  REQUIRE(capped.steps == 1);
  REQUIRE(capped.images == 4);
  REQUIRE(capped.grad_norm > 0);  // measured (a non-finite norm stops training), not clipped

  // A diverged model: training stops at once, naming the step and pointing at --lr / --clip.
  const float kept = model.box_head.weight.value().data()[0];
  model.box_head.weight.mutable_value().data()[0] = std::numeric_limits<float>::quiet_NaN();
  const std::string diverged = error_of([&] { train_one_epoch(model, criterion, opt, train_loader, 31); });
  INFO(diverged);
  REQUIRE(diverged.find("epoch 31 step 1") != std::string::npos);
  REQUIRE(diverged.find("boxes of decoder layer 0 hold") != std::string::npos);
  REQUIRE(diverged.find("--lr") != std::string::npos);
  REQUIRE(diverged.find("--clip") != std::string::npos);
  model.box_head.weight.mutable_value().data()[0] = kept;

  Evaluation ev = evaluate(model, val_loader, val_set);
  REQUIRE(ev.images == 4);
  REQUIRE(ev.detections.size() == 4 * 8);  // softmax post-processing keeps every query
  for (const auto& d : ev.detections) {
    REQUIRE(d.category_id >= 1);
    REQUIRE(d.category_id <= 10);
    const auto& info = val_set.image_info(val_set.index_of_image_id(d.image_id));
    REQUIRE(d.bbox[2] <= double(info.width) + 1e-3);  // a sigmoid width, in original-image pixels
    REQUIRE(d.bbox[3] <= double(info.height) + 1e-3);
  }
  REQUIRE(ev.coco.per_category_ap.size() == 10);
  REQUIRE(ev.map() >= 0);
}
