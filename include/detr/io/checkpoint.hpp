#pragma once
// Training checkpoints: a model, optionally its optimizer and lr schedule, and a user metadata
// map, in one safetensors file. Resuming is bit-exact: training k steps, saving, loading into
// fresh objects and training N - k more gives the same bits as training N steps straight.
//
//   io::save_checkpoint("ckpt.safetensors", model, {&opt, &sched}, {{"epoch", "12"}});
//   // later: build model, optimizer and schedule as before (same groups), then
//   auto meta = io::load_checkpoint("ckpt.safetensors", model, {&opt, &sched});
//
// Layout, mirroring the official DETR checkpoint dict {model, optimizer, lr_scheduler, epoch}:
//   tensors   model.<state_dict name>                      (official parameter names)
//             optimizer.state.<param name>.step            I64 scalar (AdamW)
//             optimizer.state.<param name>.<buffer>        exp_avg, exp_avg_sq / momentum_buffer
//             random.<k>                                   I64 words of the k-th dropout stream
//   metadata  random.streams, optimizer.type, optimizer.groups, optimizer.group.<i>.{lr,initial_lr,weight_decay,params}
//             scheduler.type, scheduler.epoch, user.<key>, detr.format, detr.checksum
// Doubles are written as their shortest round-trip decimal, so lrs come back bit for bit. The
// checksum covers every tensor's bytes and the metadata: a flipped byte anywhere is an error
// naming the file, not a silently different model. Loading checks everything (names, shapes,
// optimizer type and groups) before it changes anything.
#include <charconv>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <system_error>

#include "detr/io/safetensors.hpp"
#include "detr/nn/module.hpp"
#include "detr/optim/optimizer.hpp"
#include "detr/optim/schedule.hpp"

namespace detr::io {

using Metadata = std::map<std::string, std::string>;

// The training objects saved next to the model; either may be null.
template <class T>
struct TrainingState {
  Optimizer<T>* optimizer = nullptr;
  LRScheduler<T>* scheduler = nullptr;
};

namespace internal {

inline constexpr const char* kCheckpointFormat = "detr-checkpoint-1";

// A 64-bit running hash (rotate, xor, multiply by the golden-ratio constant): it detects
// corruption, it is not cryptographic.
class Hasher {
 public:
  void bytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      word(w);
    }
    uint64_t tail = n - i;  // the length of the tail keeps "ab" + "" apart from "a" + "b"
    for (; i < n; ++i) tail = (tail << 8) | p[i];
    word(tail);
  }
  void text(const std::string& s) { bytes(s.data(), s.size()); }
  std::string hex() const {
    char buf[17];
    for (int i = 0; i < 16; ++i) buf[i] = "0123456789abcdef"[(h_ >> (60 - 4 * i)) & 15];
    buf[16] = 0;
    return buf;
  }

 private:
  void word(uint64_t w) { h_ = (((h_ << 27) | (h_ >> 37)) ^ w) * 0x9E3779B97F4A7C15ull; }
  uint64_t h_ = 0x243F6A8885A308D3ull;
};

inline void hash_entry(Hasher& h, const std::string& name, DType dtype, const Shape& shape,
                       const void* data, size_t nbytes) {
  h.text(name);
  h.text(dtype_name(dtype));
  h.text(shape.str());
  h.bytes(data, nbytes);
}

inline void hash_metadata(Hasher& h, const Metadata& meta) {
  for (auto& [k, v] : meta)
    if (k != "detr.checksum") {
      h.text(k);
      h.text(v);
    }
}

inline std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// Writes tensors and metadata and records the checksum of both.
class CheckpointWriter {
 public:
  template <class U>
  void add(const std::string& name, const Tensor<U>& t) {
    w_.add(name, t);
    hash_entry(hashes_[name], name, dtype_of<U>(), t.shape(), t.data(), size_t(t.numel()) * sizeof(U));
  }
  void meta(const std::string& k, const std::string& v) { meta_[k] = v; }
  void save(const std::string& path) {
    meta_["detr.format"] = kCheckpointFormat;
    Hasher h;
    for (auto& [name, eh] : hashes_) h.text(eh.hex());  // in name order, as the file stores them
    hash_metadata(h, meta_);
    meta_["detr.checksum"] = h.hex();
    for (auto& [k, v] : meta_) w_.metadata(k, v);
    w_.save(path);
  }

 private:
  SafetensorsWriter w_;
  std::map<std::string, Hasher> hashes_;
  Metadata meta_;
};

// A loaded checkpoint with checked accessors whose errors name the file and the key.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path) : f_(SafetensorsFile::load(path)) {
    const auto& m = f_.metadata();
    auto fmt = m.find("detr.format");
    DETR_CHECK(fmt != m.end(), "load_checkpoint: '" << path << "' is not a DETR++ checkpoint "
                                                    "(no detr.format metadata)");
    DETR_CHECK(fmt->second == kCheckpointFormat, "load_checkpoint: '" << path << "' has format '"
                                                     << fmt->second << "', expected '"
                                                     << kCheckpointFormat << "'");
    verify_checksum();
  }

  const SafetensorsFile& file() const { return f_; }
  const std::string& path() const { return f_.path(); }
  bool has_meta(const std::string& k) const { return f_.metadata().count(k) > 0; }
  const std::string& meta(const std::string& k) const {
    auto it = f_.metadata().find(k);
    DETR_CHECK(it != f_.metadata().end(), "load_checkpoint: '" << path() << "' lacks metadata '" << k << "'");
    return it->second;
  }
  template <class N>
  N number(const std::string& k) const {
    const std::string& s = meta(k);
    N v{};
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    DETR_CHECK(r.ec == std::errc() && r.ptr == s.data() + s.size(),
               "load_checkpoint: '" << path() << "' metadata '" << k << "' = '" << s
                                    << "' is not a valid number");
    return v;
  }
  // The tensor `name`, which must exist and have `shape`.
  void check_tensor(const std::string& name, const Shape& shape, const char* what) const {
    DETR_CHECK(f_.contains(name), "load_checkpoint: '" << path() << "' lacks " << what << " '" << name << "'");
    const Shape& have = f_.entry(name).shape;
    DETR_CHECK(have == shape, "load_checkpoint: '" << path() << "' " << what << " '" << name
                                                   << "' has shape " << have << ", expected " << shape);
  }

 private:
  void verify_checksum() const {
    auto it = f_.metadata().find("detr.checksum");
    DETR_CHECK(it != f_.metadata().end(), "load_checkpoint: '" << path() << "' has no checksum");
    Hasher h;
    for (const std::string& name : f_.names()) {
      const auto& e = f_.entry(name);
      Hasher eh;
      auto add = [&](auto tag) {
        using U = decltype(tag);
        auto t = f_.get<U>(name);
        hash_entry(eh, name, e.dtype, e.shape, t.data(), size_t(t.numel()) * sizeof(U));
      };
      switch (e.dtype) {
        case DType::F32: add(float{}); break;
        case DType::F64: add(double{}); break;
        case DType::I64: add(int64_t{}); break;
        case DType::BOOL: add(uint8_t{}); break;
      }
      h.text(eh.hex());
    }
    hash_metadata(h, f_.metadata());
    DETR_CHECK(h.hex() == it->second, "load_checkpoint: '" << path() << "' is corrupt: checksum "
                                                            << h.hex() << " does not match the stored "
                                                            << it->second);
  }

  SafetensorsFile f_;
};

// The model's random streams (dropout), "random.<k>" in visit order, so that a resumed run
// draws the masks a straight run would. Checkpoints without them (older files) load with the
// streams as they are.
inline void save_random_streams(CheckpointWriter& w, const std::vector<Rng*>& streams) {
  w.meta("random.streams", std::to_string(streams.size()));
  for (size_t k = 0; k < streams.size(); ++k) {
    const std::vector<uint64_t> words = streams[k]->state();
    auto t = Tensor<int64_t>::empty({int64_t(words.size())});
    std::memcpy(t.data(), words.data(), words.size() * sizeof(uint64_t));
    w.add("random." + std::to_string(k), t);
  }
}

inline void check_random_streams(const CheckpointReader& r, size_t expected) {
  if (!r.has_meta("random.streams")) return;
  const auto saved = r.number<size_t>("random.streams");
  DETR_CHECK(saved == expected, "load_checkpoint: '" << r.path() << "' holds " << saved
                                                     << " random streams (dropout), the model has " << expected);
  for (size_t k = 0; k < saved; ++k) {
    const std::string name = "random." + std::to_string(k);
    DETR_CHECK(r.file().contains(name), "load_checkpoint: '" << r.path() << "' lacks random stream '" << name << "'");
    DETR_CHECK(r.file().entry(name).shape.rank() == 1,
               "load_checkpoint: '" << r.path() << "' random stream '" << name << "' has shape "
                                    << r.file().entry(name).shape << ", expected a vector");
  }
}

inline void load_random_streams(const CheckpointReader& r, const std::vector<Rng*>& streams) {
  if (!r.has_meta("random.streams")) return;
  for (size_t k = 0; k < streams.size(); ++k) {
    const std::string name = "random." + std::to_string(k);
    const Tensor<int64_t> t = r.file().get<int64_t>(name);
    std::vector<uint64_t> words(size_t(t.numel()));
    std::memcpy(words.data(), t.data(), words.size() * sizeof(uint64_t));
    DETR_CHECK(streams[k]->set_state(words),
               "load_checkpoint: '" << r.path() << "' random stream '" << name << "' is not a generator state");
  }
}

template <class T>
std::string group_param_names(const ParamGroup<T>& g) {
  std::string s;
  for (auto& p : g.params) s += (s.empty() ? "" : ",") + p.name;
  return s;
}

template <class T>
void save_optimizer(CheckpointWriter& w, const Optimizer<T>& opt) {
  w.meta("optimizer.type", opt.type_name());
  w.meta("optimizer.groups", std::to_string(opt.param_groups().size()));
  auto names = opt.state_names();
  size_t index = 0;
  for (size_t gi = 0; gi < opt.param_groups().size(); ++gi) {
    const auto& g = opt.param_groups()[gi];
    std::string key = "optimizer.group." + std::to_string(gi) + ".";
    w.meta(key + "lr", format_double(g.lr));
    w.meta(key + "initial_lr", format_double(g.initial_lr));
    w.meta(key + "weight_decay", format_double(g.weight_decay));
    w.meta(key + "params", group_param_names(g));
    for (auto& p : g.params) {
      const ParamState<T>& st = opt.state(index++);
      std::string prefix = "optimizer.state." + p.name + ".";
      if (st.step > 0) w.add(prefix + "step", Tensor<int64_t>::scalar(st.step));
      for (size_t b = 0; b < names.size(); ++b)
        if (st.buffers[b].defined()) w.add(prefix + names[b], st.buffers[b]);
    }
  }
}

template <class T>
void check_optimizer(const CheckpointReader& r, const Optimizer<T>& opt) {
  DETR_CHECK(r.has_meta("optimizer.type"), "load_checkpoint: '" << r.path()
                                                               << "' holds no optimizer state");
  DETR_CHECK(r.meta("optimizer.type") == opt.type_name(),
             "load_checkpoint: '" << r.path() << "' holds " << r.meta("optimizer.type")
                                  << " state, the optimizer is " << opt.type_name());
  const auto& groups = opt.param_groups();
  auto saved = r.number<size_t>("optimizer.groups");
  DETR_CHECK(saved == groups.size(), "load_checkpoint: '" << r.path() << "' has " << saved
                                                          << " optimizer parameter groups, the optimizer "
                                                          << groups.size());
  auto names = opt.state_names();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    std::string key = "optimizer.group." + std::to_string(gi) + ".";
    const std::string& have = r.meta(key + "params");
    std::string want = group_param_names(groups[gi]);
    DETR_CHECK(have == want, "load_checkpoint: '" << r.path() << "' optimizer group " << gi
                                                  << " holds parameters [" << have
                                                  << "], the optimizer's group holds [" << want << "]");
    r.number<double>(key + "lr");
    r.number<double>(key + "initial_lr");
    r.number<double>(key + "weight_decay");
    for (auto& p : groups[gi].params) {
      std::string prefix = "optimizer.state." + p.name + ".";
      if (r.file().contains(prefix + "step")) r.check_tensor(prefix + "step", Shape{}, "optimizer step");
      for (const char* n : names)
        if (r.file().contains(prefix + n)) r.check_tensor(prefix + n, p.var->shape(), "optimizer state");
    }
  }
}

template <class T>
void load_optimizer(const CheckpointReader& r, Optimizer<T>& opt) {
  auto names = opt.state_names();
  size_t index = 0;
  for (size_t gi = 0; gi < opt.param_groups().size(); ++gi) {
    auto& g = opt.param_groups()[gi];
    std::string key = "optimizer.group." + std::to_string(gi) + ".";
    g.lr = r.number<double>(key + "lr");
    g.initial_lr = r.number<double>(key + "initial_lr");
    g.weight_decay = r.number<double>(key + "weight_decay");
    for (auto& p : g.params) {
      ParamState<T>& st = opt.state(index++);
      st = ParamState<T>{};
      std::string prefix = "optimizer.state." + p.name + ".";
      if (r.file().contains(prefix + "step")) st.step = r.file().get<int64_t>(prefix + "step").item();
      for (size_t b = 0; b < names.size(); ++b)
        if (r.file().contains(prefix + names[b])) st.buffers[b] = r.file().get<T>(prefix + names[b]);
    }
  }
}

}  // namespace internal

// Writes `model` (and the optimizer / schedule in `state`, and `metadata`) to `path`; the file
// is written next to it and renamed, so an interrupted save leaves the old checkpoint intact.
template <Module M>
void save_checkpoint(const std::string& path, M& model, TrainingState<typename M::Scalar> state = {},
                     const Metadata& metadata = {}) {
  internal::CheckpointWriter w;
  for (auto& [name, t] : state_dict(model)) w.add("model." + name, t);
  internal::save_random_streams(w, random_streams(model));
  if (state.optimizer) internal::save_optimizer(w, *state.optimizer);
  if (state.scheduler) {
    w.meta("scheduler.type", state.scheduler->type_name());
    w.meta("scheduler.epoch", std::to_string(state.scheduler->epoch()));
  }
  for (auto& [k, v] : metadata) w.meta("user." + k, v);
  w.save(path);
}

// Restores what save_checkpoint wrote into objects built the same way (same model type, same
// optimizer type and parameter groups), and returns the user metadata. The schedule's epoch is
// restored as is; group lrs come from the optimizer state, as torch's load_state_dict does.
template <Module M>
Metadata load_checkpoint(const std::string& path, M& model, TrainingState<typename M::Scalar> state = {}) {
  internal::CheckpointReader r(path);
  const SafetensorsFile& f = r.file();

  // Check everything first, so a mismatch leaves every object untouched.
  auto sd = state_dict(model);
  for (auto& [name, t] : sd) r.check_tensor("model." + name, t.shape(), "model tensor");
  std::string extra;
  for (const std::string& k : f.names())
    if (k.rfind("model.", 0) == 0 && !sd.count(k.substr(6))) extra += " " + k.substr(6);
  DETR_CHECK(extra.empty(), "load_checkpoint: '" << path << "' has model tensors the model does not:" << extra);
  const std::vector<Rng*> streams = random_streams(model);
  internal::check_random_streams(r, streams.size());
  if (state.optimizer) internal::check_optimizer(r, *state.optimizer);
  if (state.scheduler) {
    DETR_CHECK(!state.optimizer || &state.scheduler->optimizer() == state.optimizer,
               "load_checkpoint: the schedule drives a different optimizer than the one given");
    DETR_CHECK(r.has_meta("scheduler.type"), "load_checkpoint: '" << path << "' holds no lr schedule");
    DETR_CHECK(r.meta("scheduler.type") == state.scheduler->type_name(),
               "load_checkpoint: '" << path << "' holds a " << r.meta("scheduler.type")
                                    << " schedule, the schedule is " << state.scheduler->type_name());
    DETR_CHECK(r.number<int64_t>("scheduler.epoch") >= 0,
               "load_checkpoint: '" << path << "' has a negative scheduler.epoch");
  }

  load_state_dict(model, f, true, "model.");
  internal::load_random_streams(r, streams);
  if (state.optimizer) internal::load_optimizer(r, *state.optimizer);
  if (state.scheduler) {
    // With the optimizer, only the counter: the lrs were restored with its groups (as torch's
    // load_state_dict does); without it, the schedule sets the lrs for the restored epoch.
    auto epoch = r.number<int64_t>("scheduler.epoch");
    if (state.optimizer) state.scheduler->restore_epoch(epoch);
    else state.scheduler->set_epoch(epoch);
  }
  Metadata user;
  for (auto& [k, v] : f.metadata())
    if (k.rfind("user.", 0) == 0) user[k.substr(5)] = v;
  return user;
}

}  // namespace detr::io
