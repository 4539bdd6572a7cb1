#pragma once
// The training and evaluation loops of the reference's engine.py, for any Detector:
//
//   train_one_epoch  forward, set criterion, backward, clip_grad_norm, optimizer step, per batch
//   evaluate         eval mode, no autograd, post-process to original-image pixels, COCO eval
//
// Both take a DataLoader, so batches are decoded and augmented on background threads while the
// model computes. The learning-rate schedule is the caller's (the reference steps it once per
// epoch, after train_one_epoch).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "detr/data/coco.hpp"
#include "detr/data/loader.hpp"
#include "detr/eval/coco_eval.hpp"
#include "detr/eval/postprocess.hpp"
#include "detr/loss/set_criterion.hpp"
#include "detr/models/detector.hpp"
#include "detr/models/per_image.hpp"
#include "detr/optim/clip.hpp"
#include "detr/optim/optimizer.hpp"
#include "detr/train/progress.hpp"

namespace detr {

// Means over an epoch's steps, what the reference logs as train_* (its MetricLogger global_avg).
struct EpochStats {
  int64_t steps = 0, images = 0;
  double seconds = 0;
  double loss = 0;         // the weighted total the optimiser minimised
  double loss_ce = 0;      // final decoder layer, unweighted
  double loss_bbox = 0;    // final decoder layer, unweighted
  double loss_giou = 0;    // final decoder layer, unweighted
  double class_error = 0;  // final decoder layer, percent of matched queries misclassified
  double grad_norm = 0;    // total gradient norm before clipping
  double lr = 0;           // the first parameter group's lr (constant within an epoch)

  double images_per_second() const { return seconds > 0 ? double(images) / seconds : 0.0; }
};

struct TrainOptions {
  double clip_max_norm = 0.1;  // the reference's --clip_max_norm; 0 turns clipping off
  int64_t max_steps = -1;      // stop the epoch after this many steps; < 0: the whole epoch
};

// A batch's images as the model's input (a copy only when the scalar type is not float).
template <class T>
Var<T> batch_images(const Batch& batch) {
  if constexpr (std::is_same_v<T, float>)
    return Var<T>(batch.images);
  else
    return Var<T>(batch.images.template cast<T>());
}

namespace internal {
inline std::string batch_image_ids(const Batch& batch) {
  std::ostringstream s;
  for (int64_t b = 0; b < batch.size(); ++b) s << (b ? ", " : "") << batch.targets[size_t(b)].image_id;
  return s.str();
}
// Stops training at the first prediction that is NaN or infinite, naming the step and the layer.
template <class T>
void check_outputs_finite(const DetectorOutput<T>& out, int64_t epoch, int64_t step, const Batch& batch) {
  auto check = [&](const Var<T>& v, const std::string& what) {
    const Tensor<T>& t = v.value();
    int64_t bad = 0;
    for (int64_t i = 0; i < t.numel(); ++i) bad += !std::isfinite(t.data()[i]);
    DETR_CHECK(bad == 0, "train_one_epoch: epoch " << epoch << " step " << step << ": the " << what << " hold " << bad
                                                   << " non-finite values (of " << t.numel() << ") on images "
                                                   << batch_image_ids(batch)
                                                   << "; the run diverged: lower --lr or clip harder (--clip)");
  };
  for (size_t l = 0; l < out.layers.size(); ++l) {
    check(out.layers[l].logits, "logits of decoder layer " + std::to_string(l));
    check(out.layers[l].boxes, "boxes of decoder layer " + std::to_string(l));
  }
  if (out.encoder) {
    check(out.encoder->logits, "encoder proposals' logits");
    check(out.encoder->boxes, "encoder proposals' boxes");
  }
}
}  // namespace internal

// One epoch (or its first opt.max_steps steps) of training; `progress`, when given, gets one
// step() per batch. The loader's epoch `epoch` fixes the order and the augmentation draws.
template <Detector M, class Dataset>
EpochStats train_one_epoch(M& model, const SetCriterion<typename M::Scalar>& criterion,
                           Optimizer<typename M::Scalar>& optimizer, DataLoader<Dataset>& loader, int64_t epoch,
                           const TrainOptions& opt = {}, ProgressBar* progress = nullptr) {
  using T = typename M::Scalar;
  const auto t0 = std::chrono::steady_clock::now();
  EpochStats st;
  st.lr = optimizer.param_groups().empty() ? 0.0 : optimizer.param_groups()[0].lr;
  train(model);
  loader.start_epoch(epoch);
  while (opt.max_steps < 0 || st.steps < opt.max_steps) {
    std::optional<Batch> batch = loader.next();
    if (!batch) break;
    // 1. Forward: every decoder layer's predictions (and two-stage proposals).
    DetectorOutput<T> out = model.forward(batch_images<T>(*batch), batch->mask);
    // A diverged model's NaN would first surface as a matcher error about its cost matrix.
    internal::check_outputs_finite(out, epoch, st.steps + 1, *batch);
    // 2. Losses: Hungarian matching per layer, then class, L1 and GIoU losses, weighted and summed.
    Losses<T> losses = criterion(out.layers, box_targets<T>(batch->targets), out.encoder_ptr());
    const double loss = double(losses.total.item());
    // 3. The reference stops on a non-finite loss: nothing after it would be meaningful.
    auto where = [&] {
      std::ostringstream w;
      const auto& f = losses.final_layer();
      w << "train_one_epoch: epoch " << epoch << " step " << st.steps + 1 << ": ";
      return std::pair{w.str(), "(final layer ce " + std::to_string(double(f.loss_ce.item())) + ", bbox " +
                                    std::to_string(double(f.loss_bbox.item())) + ", giou " +
                                    std::to_string(double(f.loss_giou.item())) + ") on images " +
                                    internal::batch_image_ids(*batch)};
    };
    if (!std::isfinite(loss)) {
      auto [head, terms] = where();
      DETR_FAIL(head << "the loss is " << loss << " " << terms
                     << "; the run diverged: lower --lr, clip harder (--clip), or check the data");
    }
    // 4. Backward from the total loss into every parameter's gradient.
    optimizer.zero_grad();
    losses.total.backward();
    // 5. Clip the gradients' global L2 norm (0.1 in the reference; 0: measured, not clipped). The
    //    norm is logged unclipped; a non-finite one stops training before it reaches the weights.
    double norm = 0;
    try {
      norm = double(clip_grad_norm(model, opt.clip_max_norm > 0 ? opt.clip_max_norm : INFINITY, 2.0, true));
    } catch (const Error& e) {
      auto [head, terms] = where();
      DETR_FAIL(head << "the gradients are not finite with a finite loss " << loss << " " << terms << ": "
                     << e.what() << "; lower --lr or clip harder (--clip)");
    }
    // 6. The optimiser step (AdamW with decoupled weight decay in the reference).
    optimizer.step();
    // 7. Bookkeeping: sums for the epoch's means, the progress line.
    const auto& last = losses.final_layer();
    st.steps += 1;
    st.images += batch->size();
    st.loss += loss;
    st.loss_ce += double(last.loss_ce.item());
    st.loss_bbox += double(last.loss_bbox.item());
    st.loss_giou += double(last.loss_giou.item());
    st.class_error += losses.class_error;
    st.grad_norm += norm;
    if (progress) progress->step(batch->size(), loss);
  }
  if (st.steps > 0)
    for (double* v : {&st.loss, &st.loss_ce, &st.loss_bbox, &st.loss_giou, &st.class_error, &st.grad_norm})
      *v /= double(st.steps);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

// What evaluate() returns: the COCO numbers (12-number summary and per-class AP) and the
// detections they were computed from, in original-image pixels.
struct Evaluation {
  CocoEvalResult coco;
  std::vector<Detection> detections;
  int64_t images = 0;
  double seconds = 0;  // forward passes and post-processing, not the COCO accumulation

  double map() const { return coco.stats[0]; }
};

// How evaluate() runs a padded batch: each image alone (forward_per_image: its detections do
// not depend on the batch) or the reference's way, the padded batch at once.
enum class InferenceBatching { per_image, padded_batch };

// The model's detections on every image of `loader`'s dataset, scored against `ground_truth`
// (the same CocoDataset, or the one it was cut from). The loader must not shuffle or drop
// images, and its transform must not crop: boxes are scaled back by each image's orig_size.
template <Detector M, class Dataset>
Evaluation evaluate(M& model, DataLoader<Dataset>& loader, const CocoDataset& ground_truth,
                    ProgressBar* progress = nullptr, InferenceBatching batching = InferenceBatching::per_image) {
  using T = typename M::Scalar;
  const auto t0 = std::chrono::steady_clock::now();
  Evaluation ev;
  eval(model);
  NoGrad no_grad;  // inference: no graph is recorded
  loader.start_epoch(0);
  while (std::optional<Batch> batch = loader.next()) {
    DetectorOutput<T> out = batching == InferenceBatching::per_image
                                ? forward_per_image(model, batch_images<T>(*batch), batch->mask)
                                : model.forward(batch_images<T>(*batch), batch->mask);
    std::vector<ImageSize> sizes;
    for (const auto& t : batch->targets) sizes.push_back({t.orig_size[0], t.orig_size[1]});
    auto dets = postprocess<M>(out.final(), sizes);
    for (int64_t b = 0; b < batch->size(); ++b) {
      auto coco = to_coco(dets[size_t(b)], batch->targets[size_t(b)].image_id, ground_truth);
      ev.detections.insert(ev.detections.end(), coco.begin(), coco.end());
    }
    ev.images += batch->size();
    if (progress) progress->step(batch->size(), NAN);
  }
  ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ev.coco = CocoEvaluator(ground_truth).evaluate(ev.detections);
  return ev;
}

}  // namespace detr
