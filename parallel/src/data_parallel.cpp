#include "trident/parallel/data_parallel.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "trident/core/backend.hpp"
#include "trident/trace/trace.hpp"

namespace trident {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Records when each launched operation finishes, from a thread of its own that waits on the
// operations in launch order with Work::synchronize (it costs no CPU: host work blocks on a
// condition variable, NCCL work on its communicator's watchdog, which polls cudaEventQuery).
// The thread never touches the compute stream: where it waits has no effect on the order of
// the step's kernels. An operation that times itself with device events (run_seconds() >= 0)
// ran that long; otherwise the communicator runs them one after another, so it ran from
// max(its launch, the previous one's end) to its end.
class CompletionClock {
 public:
  CompletionClock() : state_(std::make_shared<State>()) {
    thread_ = std::thread([s = state_] { run(*s); });
  }
  ~CompletionClock() {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->stopping = true;
    state_->cv.notify_all();
    // While an exception unwinds, an operation may never finish (the job is ending): leave
    // the thread, which owns its state, rather than wait for it.
    const bool stuck = state_->busy || !state_->queue.empty();
    lock.unlock();
    if (stuck && std::uncaught_exceptions() > 0) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  CompletionClock(const CompletionClock&) = delete;
  CompletionClock& operator=(const CompletionClock&) = delete;

  void track(std::shared_ptr<Work> work, Clock::time_point launched) {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->queue.push_back({std::move(work), launched});
    }
    state_->cv.notify_one();
  }
  // Forgets the operations recorded so far (after they finished).
  void reset() {
    std::unique_lock<std::mutex> lock(state_->mu);
    drain(lock);
    state_->spans.clear();
  }
  // Seconds the recorded operations ran; waits until every tracked operation finished.
  double busy_seconds() {
    std::unique_lock<std::mutex> lock(state_->mu);
    drain(lock);
    double total = 0;
    Clock::time_point prev_end{};
    for (const Span& span : state_->spans) {
      total += span.device_seconds >= 0
                   ? span.device_seconds
                   : seconds_between(std::max(span.launched, prev_end), span.ended);
      prev_end = span.ended;
    }
    return total;
  }

 private:
  struct Entry {
    std::shared_ptr<Work> work;
    Clock::time_point launched;
  };
  struct Span {
    Clock::time_point launched, ended;
    double device_seconds;  // Work::run_seconds(): negative when not measured on a device
  };
  struct State {
    std::mutex mu;
    std::condition_variable cv, idle_cv;
    std::deque<Entry> queue;
    std::vector<Span> spans;
    bool busy = false, stopping = false;
  };

  void drain(std::unique_lock<std::mutex>& lock) {
    state_->idle_cv.wait(lock, [&] { return state_->queue.empty() && !state_->busy; });
  }

  static void run(State& s) {
    std::unique_lock<std::mutex> lock(s.mu);
    for (;;) {
      s.cv.wait(lock, [&] { return !s.queue.empty() || s.stopping; });
      if (s.queue.empty()) return;
      Entry e = std::move(s.queue.front());
      s.queue.pop_front();
      s.busy = true;
      lock.unlock();
      double device_seconds = -1;
      try {
        e.work->synchronize();
        device_seconds = e.work->run_seconds();
      } catch (...) {
        // The waiting caller reports the failure; the clock only stops counting.
      }
      const auto ended = Clock::now();
      e.work.reset();
      lock.lock();
      s.spans.push_back({e.launched, ended, device_seconds});
      s.busy = false;
      if (s.queue.empty()) s.idle_cv.notify_all();
    }
  }

  std::shared_ptr<State> state_;
  std::thread thread_;
};

// The grad-ready hook of one parameter; a type of its own so the destructor can find and
// remove the hooks this reducer installed.
struct ReducerHook {
  DataParallelReducer* owner;
  size_t index;
  std::function<void(size_t)> call;
  void operator()(Tensor&) const { call(index); }
};

// Buffers an unfinished collective may still write into, kept until the process exits.
void abandon_buffers(std::vector<Tensor> buffers) {
  static std::mutex mu;
  static std::vector<Tensor> abandoned;
  std::lock_guard<std::mutex> lock(mu);
  for (auto& t : buffers) abandoned.push_back(std::move(t));
}

int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

}  // namespace

struct DataParallelReducer::Impl {
  struct BucketState {
    size_t ready = 0;  // parameters whose gradient is final in this pass
    bool launched = false, waited = false;
    std::shared_ptr<Work> work;
  };
  std::vector<BucketState> state;
  // The step's waited works, kept until the next step for their stall times (device work).
  std::vector<std::shared_ptr<Work>> waited;
  double device_stall_seconds = -1;  // their sum, once measured; negative until then
  std::vector<Tensor> grad_views;    // per parameter: its view into the bucket's gradients
  Tensor all_grads;         // every bucket's gradients, one allocation (zero_grad: one fill)
  std::vector<char> fired;  // per parameter: hook fired in the armed pass
  size_t next_launch = 0;
  CompletionClock clock;
};

DataParallelReducer::DataParallelReducer(std::vector<std::pair<std::string, Tensor>> named_params,
                                         Communicator& dp, DataParallelOptions opts)
    : params_(std::move(named_params)),
      dp_(dp),
      opts_(std::move(opts)),
      impl_(std::make_unique<Impl>()) {
  const size_t n = params_.size();
  TRIDENT_CHECK(n > 0, "DataParallelReducer: no parameters to reduce");
  const Device device = params_[0].second.device();
  const DType dtype = params_[0].second.dtype();
  TRIDENT_CHECK(opts_.bucket_bytes > 0, "DataParallelReducer: bucket_bytes must be positive");
  std::set<std::string> names;
  std::set<const TensorImpl*> impls;
  for (const auto& [name, p] : params_) {
    TRIDENT_CHECK(p.dtype() == DType::F32, "DataParallelReducer: parameter '", name, "' is ",
                  dtype_name(p.dtype()), "; data parallelism keeps f32 master weights");
    TRIDENT_CHECK(p.device() == device, "DataParallelReducer: parameter '", name, "' is on ",
                  p.device().str(), ", the others on ", device.str());
    TRIDENT_CHECK(p.is_contiguous(), "DataParallelReducer: parameter '", name,
                  "' is not contiguous");
    TRIDENT_CHECK(p.is_leaf(), "DataParallelReducer: parameter '", name, "' is not a leaf");
    TRIDENT_CHECK(names.insert(name).second, "DataParallelReducer: parameter name '", name,
                  "' appears twice");
    TRIDENT_CHECK(impls.insert(&p.impl()).second, "DataParallelReducer: parameter '", name,
                  "' is the same tensor as an earlier one: list a tied parameter once");
  }
  for (const auto& name : opts_.solo_params) {
    TRIDENT_CHECK(names.count(name), "DataParallelReducer: solo_params names '", name,
                  "', which is not one of the parameters");
  }
  const std::set<std::string> solo(opts_.solo_params.begin(), opts_.solo_params.end());

  // Buckets in reverse parameter order: the order backward makes gradients final.
  const int64_t dp_size = dp_.size();
  const size_t elem = dtype_size(dtype);
  std::vector<GradientBucket> buckets;
  GradientBucket current;
  auto close = [&] {
    if (current.params.empty()) return;
    buckets.push_back(std::move(current));
    current = GradientBucket{};
  };
  for (size_t k = n; k-- > 0;) {
    const auto& [name, p] = params_[k];
    if (solo.count(name)) close();
    current.params.push_back(k);
    current.offsets.push_back(current.used);
    current.used += p.numel();
    if (solo.count(name) || static_cast<size_t>(current.used) * elem >= opts_.bucket_bytes) {
      close();
    }
  }
  close();
  buckets_ = std::move(buckets);

  bucket_of_param_.assign(n, 0);
  slot_of_param_.assign(n, 0);
  impl_->grad_views.resize(n);
  impl_->fired.assign(n, 0);
  impl_->state.resize(buckets_.size());
  // The buckets' gradients are slices of one buffer, each on a 256-byte boundary (16-byte vector
  // accesses, NCCL's alignment), so that zero_grad is one fill, not one per bucket.
  constexpr int64_t kGradAlign = 64;  // elements (f32: 256 bytes)
  std::vector<int64_t> grads_offset(buckets_.size());
  int64_t all_numel = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    GradientBucket& bucket = buckets_[b];
    bucket.numel = std::max<int64_t>(dp_size, round_up(bucket.used, dp_size));
    grads_offset[b] = all_numel;
    all_numel += round_up(bucket.numel, kGradAlign);
  }
  impl_->all_grads = Tensor::zeros({std::max<int64_t>(all_numel, 1)}, dtype, device);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    GradientBucket& bucket = buckets_[b];
    bucket.shard_numel = bucket.numel / dp_size;
    bucket.shard_begin = opts_.zero ? dp_.rank() * bucket.shard_numel : 0;
    bucket.grads = impl_->all_grads.slice(0, grads_offset[b], grads_offset[b] + bucket.numel);
    if (opts_.zero) {
      bucket.values = Tensor::zeros({bucket.numel}, dtype, device);
      bucket.shard_grads = Tensor::zeros({bucket.shard_numel}, dtype, device);
    }
    for (size_t s = 0; s < bucket.params.size(); ++s) {
      const size_t k = bucket.params[s];
      bucket_of_param_[k] = b;
      slot_of_param_[k] = s;
      Tensor& p = params_[k].second;
      const int64_t off = bucket.offsets[s];
      impl_->grad_views[k] = bucket.grads.slice(0, off, off + p.numel()).reshape(p.shape());
      if (opts_.zero) {
        // The parameter moves into the bucket: same TensorImpl (so the model and every
        // handle see it), storage re-pointed at the flat value buffer.
        NoGradGuard no_grad;
        Tensor dst = bucket.values.slice(0, off, off + p.numel()).reshape(p.shape());
        dst.copy_(p);
        p.impl().storage = bucket.values.impl().storage;
        p.impl().offset = bucket.values.offset() + off;
        p.impl().strides = contiguous_strides(p.shape());
      }
    }
  }

  if (opts_.broadcast_parameters && dp_size > 1) {
    backend_for(device).synchronize();
    if (opts_.zero) {
      for (auto& bucket : buckets_)
        dp_.broadcast(bucket.values.raw_data(), static_cast<size_t>(bucket.numel), dtype, 0);
    } else {
      for (auto& [name, p] : params_)
        dp_.broadcast(p.raw_data(), static_cast<size_t>(p.numel()), dtype, 0);
    }
  }

  for (size_t k = 0; k < n; ++k) {
    params_[k].second.register_grad_ready_hook(
        ReducerHook{this, k, [this](size_t i) { on_grad_ready(i); }});
  }
  reduced_ = true;  // no step open: the first prepare() starts one
}

DataParallelReducer::~DataParallelReducer() {
  for (auto& [name, p] : params_) {
    auto& hooks = p.impl().grad_ready_hooks;
    hooks.erase(std::remove_if(hooks.begin(), hooks.end(),
                               [this](const GradReadyHook& h) {
                                 const auto* r = h.target<ReducerHook>();
                                 return r != nullptr && r->owner == this;
                               }),
                hooks.end());
  }
  // A reduction still in flight writes into its bucket: wait for it. While an exception unwinds
  // (the job is ending, a peer may never join) keep the buffers alive instead, for good.
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Impl::BucketState& st = impl_->state[b];
    if (!st.launched || st.waited || st.work == nullptr) continue;
    if (std::uncaught_exceptions() > 0) {
      abandon_buffers({buckets_[b].grads, buckets_[b].shard_grads});
      continue;
    }
    try {
      st.work->synchronize();
    } catch (const std::exception&) {
      abandon_buffers({buckets_[b].grads, buckets_[b].shard_grads});
    }
  }
}

size_t DataParallelReducer::bucket_of(const std::string& name) const {
  for (size_t k = 0; k < params_.size(); ++k) {
    if (params_[k].first == name) return bucket_of_param_[k];
  }
  throw Error(str_cat("DataParallelReducer: no parameter named '", name, "'"));
}

size_t DataParallelReducer::bytes_per_step() const {
  size_t bytes = 0;
  for (const auto& b : buckets_) bytes += b.grads.nbytes();
  return bytes;
}

void DataParallelReducer::install_grad_views() {
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor& p = params_[k].second;
    Tensor& view = impl_->grad_views[k];
    const auto& grad = p.impl().grad;
    if (grad.get() == view.impl_ptr().get()) continue;  // accumulating into the bucket already
    if (grad) {
      view.copy_(Tensor(grad));  // a gradient set from elsewhere: carry it into the bucket
    } else {
      view.zero_();
    }
    p.impl().grad = view.impl_ptr();
  }
}

void DataParallelReducer::zero_grad() {
  TRIDENT_CHECK(!armed_ || reduced_,
                "DataParallelReducer::zero_grad() in the middle of a step: call finish() first");
  impl_->all_grads.zero_();  // every bucket in one pass, padding included
  for (size_t k = 0; k < params_.size(); ++k)
    params_[k].second.impl().grad = impl_->grad_views[k].impl_ptr();
}

void DataParallelReducer::prepare(bool last_micro_batch) {
  TRIDENT_CHECK(!armed_ || reduced_,
                "DataParallelReducer::prepare() after prepare(true) without finish(): call "
                "finish() once the last micro-batch's backward is done");
  if (reduced_) {  // a new step
    reduced_ = false;
    for (auto& s : impl_->state) s = Impl::BucketState{};
    std::fill(impl_->fired.begin(), impl_->fired.end(), 0);
    impl_->next_launch = 0;
    impl_->clock.reset();
    impl_->waited.clear();
    impl_->device_stall_seconds = -1;
    exposed_seconds_ = 0;
    launched_in_backward_ = hooks_fired_ = hooks_at_first_launch_ = 0;
  }
  install_grad_views();
  armed_ = last_micro_batch;
}

void DataParallelReducer::on_grad_ready(size_t k) {
  if (!armed_ || reduced_ || impl_->fired[k]) return;  // not the last micro-batch's backward
  impl_->fired[k] = 1;
  Tensor& p = params_[k].second;
  Tensor& view = impl_->grad_views[k];
  if (p.impl().grad.get() != view.impl_ptr().get()) {  // replaced behind our back: copy in
    if (p.impl().grad) view.copy_(Tensor(p.impl().grad));
    p.impl().grad = view.impl_ptr();
  }
  ++hooks_fired_;
  Impl::BucketState& st = impl_->state[bucket_of_param_[k]];
  ++st.ready;
  if (opts_.overlap && st.ready == buckets_[bucket_of_param_[k]].params.size())
    launch_ready_buckets(true);
}

// Launches, in bucket order, every bucket whose gradients are all final (from a hook) or
// every bucket (from finish / wait_bucket, `from_hook` false).
void DataParallelReducer::launch_ready_buckets(bool from_hook) {
  while (impl_->next_launch < buckets_.size()) {
    const size_t b = impl_->next_launch;
    if (from_hook && impl_->state[b].ready < buckets_[b].params.size()) break;
    if (from_hook) {
      if (launched_in_backward_ == 0) hooks_at_first_launch_ = hooks_fired_;
      ++launched_in_backward_;
    }
    launch(b);
    ++impl_->next_launch;
  }
}

void DataParallelReducer::launch(size_t b) {
  GradientBucket& bucket = buckets_[b];
  Impl::BucketState& st = impl_->state[b];
  trace::Span span("launch bucket", trace::Category::Comm);  // its reduction: "all_reduce dp"
  span.arg("bucket", static_cast<int64_t>(b));
  span.arg("bytes", static_cast<int64_t>(bucket.grads.nbytes()));
  // No device synchronisation: a communicator orders its operation after the work queued on
  // the device before the call (NCCL and MPI's device staging record an event on the compute
  // stream), so the bucket's gradients are written before they travel.
  const auto count = static_cast<size_t>(bucket.numel);
  if (dp_.size() == 1 && !opts_.zero && !opts_.collectives_on_one_rank) {
    // The average over one rank is the gradient itself (bit for bit): no collective, and so
    // no event whose timing would make the host wait for the device.
    st.launched = true;
    return;
  }
  if (opts_.zero) {
    st.work = dp_.reduce_scatter_async(bucket.grads.raw_data(), bucket.shard_grads.raw_data(),
                                       static_cast<size_t>(bucket.shard_numel),
                                       bucket.grads.dtype(), ReduceOp::Avg);
  } else {
    st.work =
        dp_.all_reduce_async(bucket.grads.raw_data(), count, bucket.grads.dtype(), ReduceOp::Avg);
  }
  st.launched = true;
  impl_->clock.track(st.work, Clock::now());
}

void DataParallelReducer::wait_launched(size_t b) {
  Impl::BucketState& st = impl_->state[b];
  if (st.waited) return;
  if (st.work == nullptr) {  // nothing launched (one rank)
    st.waited = true;
    return;
  }
  const auto t0 = Clock::now();
  trace::Span span("wait bucket", trace::Category::Comm);
  span.arg("bucket", static_cast<int64_t>(b));
  span.arg("bytes", static_cast<int64_t>(buckets_[b].grads.nbytes()));
  st.work->wait();  // host work: blocks; device work: orders the compute stream after it
  exposed_seconds_ += seconds_between(t0, Clock::now());
  st.waited = true;
  impl_->waited.push_back(std::move(st.work));
}

void DataParallelReducer::wait_bucket(size_t b) {
  TRIDENT_CHECK(b < buckets_.size(), "DataParallelReducer::wait_bucket(", b, "): there are ",
                buckets_.size(), " buckets");
  if (reduced_) return;
  // The exposed data-parallel communication: launching what backward did not, and waiting.
  trace::Span span("dp reduce wait", trace::Category::Comm);
  span.arg("buckets", static_cast<int64_t>(b + 1));
  const auto t0 = Clock::now();
  while (impl_->next_launch <= b) {
    launch(impl_->next_launch);
    ++impl_->next_launch;
  }
  exposed_seconds_ += seconds_between(t0, Clock::now());
  for (size_t i = 0; i <= b; ++i) wait_launched(i);
  if (b + 1 == buckets_.size()) {
    reduced_ = true;
    armed_ = false;
  }
}

void DataParallelReducer::finish() {
  if (reduced_) return;
  wait_bucket(buckets_.size() - 1);
}

double DataParallelReducer::comm_seconds() const {
  return impl_->clock.busy_seconds();
}

double DataParallelReducer::exposed_comm_seconds() const {
  if (!reduced_ || impl_->waited.empty()) return exposed_seconds_;
  if (impl_->device_stall_seconds < 0) {
    impl_->clock.busy_seconds();  // every reduction of the step has completed
    double stall = 0;
    for (const auto& work : impl_->waited) stall += std::max(0.0, work->stall_seconds());
    impl_->device_stall_seconds = stall;
  }
  return exposed_seconds_ + impl_->device_stall_seconds;
}

void DataParallelReducer::ensure_reduced(const char* caller) const {
  TRIDENT_CHECK(reduced_, "DataParallelReducer::", caller,
                "() before finish(): the gradients are not reduced yet");
}

void DataParallelReducer::all_reduce_param_grad(const std::string& name, Communicator& group) {
  ensure_reduced("all_reduce_param_grad");
  const size_t b = bucket_of(name);
  GradientBucket& bucket = buckets_[b];
  TRIDENT_CHECK(bucket.params.size() == 1, "all_reduce_param_grad('", name,
                "'): the parameter shares bucket ", b, " with ", bucket.params.size() - 1,
                " others; give it its own with DataParallelOptions::solo_params");
  if (opts_.zero) {
    group.all_reduce(bucket.shard_grads.raw_data(), static_cast<size_t>(bucket.shard_numel),
                     bucket.shard_grads.dtype(), ReduceOp::Sum);
  } else {
    group.all_reduce(bucket.grads.raw_data(), static_cast<size_t>(bucket.used),
                     bucket.grads.dtype(), ReduceOp::Sum);
  }
}

// One pass over all the pieces (one read-back on a GPU, not one per bucket). On the CPU the
// sum is accumulated piece by piece in this order, as a loop over sum_squares would.
double DataParallelReducer::grad_sum_squares_local() const {
  ensure_reduced("grad_sum_squares_local");
  std::vector<const void*> ptrs;
  std::vector<int64_t> ns;
  for (const auto& bucket : buckets_) {
    const Tensor& g = opts_.zero ? bucket.shard_grads : bucket.grads;
    ptrs.push_back(g.raw_data());
    ns.push_back(g.numel());
  }
  const Tensor& g0 = opts_.zero ? buckets_[0].shard_grads : buckets_[0].grads;
  return backend_for(g0.device())
      .sum_squares_multi(g0.dtype(), ptrs.data(), ns.data(), static_cast<int>(ptrs.size()));
}

void DataParallelReducer::weighted_grad_pieces(const std::vector<double>& weights,
                                               std::vector<double>& group_weight,
                                               std::vector<std::vector<const void*>>& group_ptrs,
                                               std::vector<std::vector<int64_t>>& group_ns) const {
  ensure_reduced("grad_sum_squares_local");
  TRIDENT_CHECK(weights.size() == params_.size(), "grad_sum_squares_local: ", weights.size(),
                " weights for ", params_.size(), " parameters");
  // extends[g]: group g's last range lies in this bucket (a range never spans two buckets).
  std::vector<char> extends(group_weight.size(), 0);
  for (const auto& bucket : buckets_) {
    std::fill(extends.begin(), extends.end(), 0);
    const Tensor& g = opts_.zero ? bucket.shard_grads : bucket.grads;
    const int64_t base = opts_.zero ? bucket.shard_begin : 0;
    const char* data = static_cast<const char*>(g.raw_data());
    const size_t esize = dtype_size(g.dtype());
    for (size_t k = 0; k < bucket.params.size(); ++k) {
      const double w = weights[bucket.params[k]];
      if (w == 0) continue;
      const int64_t lo = std::max(bucket.offsets[k], base);
      const int64_t hi =
          std::min(bucket.offsets[k] + params_[bucket.params[k]].second.numel(), base + g.numel());
      if (hi <= lo) continue;
      size_t gi = 0;
      while (gi < group_weight.size() && group_weight[gi] != w) ++gi;
      if (gi == group_weight.size()) {
        group_weight.push_back(w);
        group_ptrs.emplace_back();
        group_ns.emplace_back();
        extends.push_back(0);
      }
      const char* piece = data + (lo - base) * static_cast<int64_t>(esize);
      auto& ptrs = group_ptrs[gi];
      auto& ns = group_ns[gi];
      // A piece that continues its group's last one in memory extends it (the parameters of a
      // bucket lie back to back): a bucket of equal weights is one range.
      if (extends[gi] != 0 &&
          static_cast<const char*>(ptrs.back()) + ns.back() * static_cast<int64_t>(esize) ==
              piece) {
        ns.back() += hi - lo;
      } else {
        ptrs.push_back(piece);
        ns.push_back(hi - lo);
      }
      extends[gi] = 1;
    }
  }
}

double DataParallelReducer::grad_sum_squares_local(const std::vector<double>& weights) const {
  // The pieces grouped by weight (in practice 1 and 0): one pass per distinct weight.
  std::vector<double> group_weight;
  std::vector<std::vector<const void*>> group_ptrs;
  std::vector<std::vector<int64_t>> group_ns;
  weighted_grad_pieces(weights, group_weight, group_ptrs, group_ns);
  const Tensor& g0 = opts_.zero ? buckets_[0].shard_grads : buckets_[0].grads;
  Backend& be = backend_for(g0.device());
  double s = 0;
  for (size_t gi = 0; gi < group_weight.size(); ++gi) {
    s += group_weight[gi] * be.sum_squares_multi(g0.dtype(), group_ptrs[gi].data(),
                                                 group_ns[gi].data(),
                                                 static_cast<int>(group_ptrs[gi].size()));
  }
  return s;
}

void DataParallelReducer::grad_sum_squares_local_to(const std::vector<double>& weights,
                                                    double* out) const {
  std::vector<double> group_weight;
  std::vector<std::vector<const void*>> group_ptrs;
  std::vector<std::vector<int64_t>> group_ns;
  weighted_grad_pieces(weights, group_weight, group_ptrs, group_ns);
  TRIDENT_CHECK(group_weight.size() <= 1 && (group_weight.empty() || group_weight[0] == 1.0),
                "grad_sum_squares_local_to: weights other than 0 and 1");
  const Tensor& g0 = opts_.zero ? buckets_[0].shard_grads : buckets_[0].grads;
  Backend& be = backend_for(g0.device());
  if (group_weight.empty()) {
    be.fill(DType::F64, out, 0.0, 1);
  } else {
    be.sum_squares_multi_to(g0.dtype(), out, group_ptrs[0].data(), group_ns[0].data(),
                            static_cast<int>(group_ptrs[0].size()));
  }
}

void DataParallelReducer::scale_grads(double coef) {
  ensure_reduced("scale_grads");
  for (auto& bucket : buckets_) {
    Tensor& g = opts_.zero ? bucket.shard_grads : bucket.grads;
    backend_for(g.device()).scale(g.dtype(), g.raw_data(), g.raw_data(), coef, g.numel());
  }
}

}  // namespace trident
