#pragma once
// Learning-rate schedules (torch.optim.lr_scheduler). A schedule owns an epoch counter and sets
// the lr of every group of its optimizer from the group's initial_lr; a new schedule only says
// what the lr is at an epoch (lr_at). Like torch, constructing a schedule records each group's
// current lr as its initial_lr and applies epoch 0; call step() once per epoch, after the
// epoch's optimizer steps.
#include <cstdint>

#include "detr/optim/optimizer.hpp"

namespace detr {

template <class T>
class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // The lr of a group whose initial lr is `base`, at `epoch` (>= 0).
  virtual double lr_at(double base, int64_t epoch) const = 0;
  // "StepLR", ...: written to checkpoints, checked when loading.
  virtual const char* type_name() const = 0;

  void step() { set_epoch(epoch_ + 1); }
  // Moves to `epoch` and sets every group's lr for it.
  void set_epoch(int64_t epoch) {
    DETR_CHECK(epoch >= 0, type_name() << ": epoch must be >= 0, got " << epoch);
    epoch_ = epoch;
    for (auto& g : opt_.param_groups()) g.lr = lr_at(g.initial_lr, epoch_);
  }
  // Sets the counter only, leaving the lrs alone (checkpoint loading restores those itself).
  void restore_epoch(int64_t epoch) {
    DETR_CHECK(epoch >= 0, type_name() << ": epoch must be >= 0, got " << epoch);
    epoch_ = epoch;
  }
  // torch's last_epoch: the number of step() calls so far.
  int64_t epoch() const { return epoch_; }
  Optimizer<T>& optimizer() const { return opt_; }

 protected:
  explicit LRScheduler(Optimizer<T>& opt) : opt_(opt) {
    for (auto& g : opt_.param_groups()) g.initial_lr = g.lr;
  }

 private:
  Optimizer<T>& opt_;
  int64_t epoch_ = 0;
};

// StepLR: the lr is multiplied by gamma every step_size epochs (DETR: lr_drop = 200, gamma 0.1).
template <class T>
class StepLR : public LRScheduler<T> {
 public:
  StepLR(Optimizer<T>& opt, int64_t step_size, double gamma = 0.1)
      : LRScheduler<T>(opt), step_size_(step_size), gamma_(gamma) {
    DETR_CHECK(step_size > 0, "StepLR: step_size must be positive, got " << step_size);
    this->set_epoch(0);
  }

  // torch's chainable StepLR multiplies the current lr by gamma at each multiple of step_size;
  // repeating that multiplication from the base lr gives the same double bits as torch.
  double lr_at(double base, int64_t epoch) const override {
    double lr = base;
    for (int64_t k = epoch / step_size_; k > 0; --k) lr *= gamma_;
    return lr;
  }
  const char* type_name() const override { return "StepLR"; }
  int64_t step_size() const { return step_size_; }
  double gamma() const { return gamma_; }

 private:
  int64_t step_size_;
  double gamma_;
};

}  // namespace detr
