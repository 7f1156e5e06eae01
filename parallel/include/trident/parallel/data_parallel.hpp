// Data parallelism: gradients in contiguous buckets, reduced over the data-parallel group while
// the backward pass runs (the design of PyTorch DDP's reducer).
//
// Layout. The parameters are packed, in REVERSE order of the list given (the order in which
// backward makes their gradients final), into buckets of about `bucket_bytes` each; a parameter
// named in `solo_params` gets a bucket of its own. A bucket is one flat gradient buffer of
// `numel` elements, padded with zeros so numel divides dp. Before each backward, prepare()
// installs every parameter's .grad as a view into its bucket, so autograd accumulates straight
// into the bucket (micro-batches add up there).
//
// Overlap. Each parameter has a grad-ready hook. During the backward of the step's last
// micro-batch, a bucket whose last gradient is final is launched: an asynchronous all-reduce
// (average over dp) on the communicator's thread, while backward goes on computing earlier
// layers. Buckets are launched in bucket order (the same order on every rank, as collectives
// require), so a bucket that is ready early waits for the ones before it. finish() launches
// whatever is left (buckets whose parameters got no gradient this pass, or every bucket when
// overlap is off) and waits for all of them: Work::wait(), which blocks the host for MPI and,
// for NCCL, makes the compute stream wait for the bucket there and only there, where the
// reduced gradients are first read. The launch never synchronises the device: the
// communicator orders each collective after the kernels queued before it. The time the
// consumer waits is the exposed communication time (host time blocked; for NCCL the compute
// stream's stall, measured with events).
//
// ZeRO-1 (`zero = true`). The parameters themselves move into flat per-bucket buffers (each
// parameter's storage is re-pointed into its bucket's value buffer, keeping its shape), and a
// bucket is reduce-scattered instead of all-reduced: rank r receives the averaged gradients of
// elements [r numel/dp, (r+1) numel/dp) of every bucket, its shard. ZeroAdamW
// (zero_optimizer.hpp) updates only that shard and all-gathers the bucket's values. In this
// mode a parameter's .grad holds this rank's local, unreduced gradient after finish(); the
// reduced gradients live in the shards (shard_grads of each bucket).
//
// Per training step (any number of micro-batches, the loss scaled by 1 / micro-batches):
//
//   reducer.zero_grad();                               // (or optimizer.zero_grad())
//   for (int m = 0; m < micro_batches; ++m) {
//     Tensor loss = ...forward on micro-batch m of this rank's slice...;
//     reducer.prepare(/*last_micro_batch=*/m == micro_batches - 1);
//     loss.backward();
//   }
//   reducer.finish();                                  // reduced gradients are ready
//   reducer.all_reduce_param_grad("wte.weight", *ctx.embedding_group());  // pp > 1 only
//   clip: norm = sqrt(sum over dp (and pp) of reducer.grad_sum_squares_local());
//         optimizer.set_grad_scale(min(1, max_norm / (norm + 1e-6)));  // read by the update
//         (or reducer.scale_grads(that factor): a pass over the gradients)
//   optimizer.step();                                  // AdamW, or ZeroAdamW under ZeRO-1
//
// Every rank of the group must construct the reducer with the same parameter shapes and
// options and run the same sequence of calls. A parameter that backward does not reach keeps a
// zero gradient (its bucket is then reduced in finish()). Parameters must be f32 (the
// optimizers keep fp32 master weights), contiguous and on one device that `dp` can reach.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trident/core/tensor.hpp"
#include "trident/parallel/communicator.hpp"

namespace trident {

struct DataParallelOptions {
  // Target size of a bucket's gradients: a bucket is closed once it holds at least this much
  // (so one parameter larger than it forms a bucket alone).
  size_t bucket_bytes = size_t{25} << 20;
  // Launch each bucket from the grad-ready hooks; false reduces every bucket in finish().
  bool overlap = true;
  // ZeRO-1: reduce-scatter gradients, parameters in flat buckets, see above.
  bool zero = false;
  // Parameters (by name) that get a bucket of their own, e.g. the tied token embedding whose
  // gradient the pipeline's first and last stages sum (all_reduce_param_grad).
  std::vector<std::string> solo_params;
  // Broadcast dp rank 0's parameter values at construction, so every replica starts equal.
  bool broadcast_parameters = true;
  // A group of one rank: the average is the gradient itself, so no collective runs (and no
  // event makes the host wait for the device). True runs them anyway, for tests of the
  // communication path on one device.
  bool collectives_on_one_rank = false;
};

// A contiguous group of parameters whose gradients are reduced by one collective.
struct GradientBucket {
  std::vector<size_t> params;    // indices into the reducer's parameter list, in layout order
  std::vector<int64_t> offsets;  // element offset of each parameter in the bucket
  int64_t used = 0;              // elements the parameters fill
  int64_t numel = 0;             // used + padding, a multiple of dp
  Tensor grads;                  // (numel): gradients, reduced in place without ZeRO
  Tensor values;                 // ZeRO: (numel) parameter values; parameters are views into it
  Tensor shard_grads;            // ZeRO: (numel / dp) this rank's averaged gradients
  int64_t shard_begin = 0;       // this rank's shard: elements [shard_begin, + shard_numel)
  int64_t shard_numel = 0;       // numel / dp
};

class DataParallelReducer {
 public:
  // `named_params` as from Module::named_parameters(). Collective over `dp` (when
  // broadcast_parameters is on). `dp` must outlive the reducer.
  DataParallelReducer(std::vector<std::pair<std::string, Tensor>> named_params, Communicator& dp,
                      DataParallelOptions opts = {});
  ~DataParallelReducer();
  DataParallelReducer(const DataParallelReducer&) = delete;
  DataParallelReducer& operator=(const DataParallelReducer&) = delete;

  // Zeroes every bucket's gradients (one pass per bucket) and makes each parameter's .grad its
  // bucket view again: what dropping the gradients and prepare() would give, without a pass
  // per parameter. Between steps (before the first prepare() of a step).
  void zero_grad();
  // Call before each micro-batch's backward. Installs bucket views as gradients (a parameter
  // whose .grad was dropped gets a zeroed view; one holding another tensor has it copied in).
  // `last_micro_batch` arms the hooks: buckets are reduced during this backward only.
  void prepare(bool last_micro_batch);
  // Launches the buckets not yet launched and waits for every reduction of this step. Idempotent
  // until the next prepare().
  void finish();
  // Waits for bucket `b`'s reduction (launching it and every bucket before it if needed); the
  // exposed-time clock runs while it waits. ZeroAdamW waits bucket by bucket through this.
  void wait_bucket(size_t b);

  // Sums the (already dp-reduced) gradient of `name` over `group`: the whole gradient, or under
  // ZeRO this rank's shard of it. `name` must have a solo bucket. Blocking; after finish().
  void all_reduce_param_grad(const std::string& name, Communicator& group);
  // Sum of squares of the reduced gradients this rank is responsible for: all of them, or
  // under ZeRO its shards (summing over dp then gives the total). After finish().
  double grad_sum_squares_local() const;
  // The same with parameter i's squares multiplied by weights[i] (index as named_parameters());
  // a weight of 0 leaves out a parameter that another rank counts (a tensor-parallel replica,
  // the tied embedding's second copy).
  double grad_sum_squares_local(const std::vector<double>& weights) const;
  // Multiplies those same gradients by `coef` (gradient clipping). After finish().
  void scale_grads(double coef);
  // Without host synchronisation (a device training step, Backend::train_step_finish): queues
  // *out (a device double) = grad_sum_squares_local(weights), for weights of 0 and 1 only.
  // Both sum the gradients of consecutive parameters of equal weight as one range (one
  // multi-tensor pass, in practice one range per bucket).
  void grad_sum_squares_local_to(const std::vector<double>& weights, double* out) const;

  // --- layout ---------------------------------------------------------------------------------
  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  const std::vector<std::pair<std::string, Tensor>>& named_parameters() const { return params_; }
  size_t bucket_of(const std::string& name) const;
  Communicator& dp() const { return dp_; }
  const DataParallelOptions& options() const { return opts_; }

  // --- measurements of the last step (since the prepare(true) that armed it) ------------------
  // Seconds the consumer waited for reductions in finish() / wait_bucket(): the host blocked
  // (MPI), plus for device work (NCCL) the time the compute stream stood at each wait until
  // the bucket's collective completed (events). For device work, reading it after finish()
  // blocks until the step's reductions completed on the device.
  double exposed_comm_seconds() const;
  // Seconds the reductions ran, overlapped or not: on the device, between events around each
  // collective (NCCL); otherwise from the completion time of each operation on the
  // communicator's thread (they run one after another in launch order). Blocks until the
  // step's reductions completed.
  double comm_seconds() const;
  // Buckets launched by grad-ready hooks (during backward) in the last step.
  size_t buckets_launched_in_backward() const { return launched_in_backward_; }
  // Grad-ready hooks that had fired when the first bucket was launched in the last step
  // (out of named_parameters().size()); meaningful when buckets_launched_in_backward() > 0.
  size_t hooks_fired_at_first_launch() const { return hooks_at_first_launch_; }
  // Bytes moved per step through the dp collectives (all buckets, padded).
  size_t bytes_per_step() const;

 private:
  // The reduced gradient pieces with a nonzero weight, grouped by weight: group_weight[g] and
  // its pieces' pointers and lengths.
  void weighted_grad_pieces(const std::vector<double>& weights, std::vector<double>& group_weight,
                            std::vector<std::vector<const void*>>& group_ptrs,
                            std::vector<std::vector<int64_t>>& group_ns) const;
  struct Impl;
  void on_grad_ready(size_t param_index);
  void install_grad_views();
  void launch_ready_buckets(bool from_hook);
  void launch(size_t b);
  void wait_launched(size_t b);
  void ensure_reduced(const char* caller) const;

  std::vector<std::pair<std::string, Tensor>> params_;
  Communicator& dp_;
  DataParallelOptions opts_;
  std::vector<GradientBucket> buckets_;
  std::vector<size_t> bucket_of_param_, slot_of_param_;
  std::unique_ptr<Impl> impl_;  // per-step state and the completion clock

  bool armed_ = false;    // prepare(true) was called; hooks launch buckets
  bool reduced_ = false;  // finish() ran since the last prepare
  double exposed_seconds_ = 0;
  size_t launched_in_backward_ = 0, hooks_fired_ = 0, hooks_at_first_launch_ = 0;
};

}  // namespace trident
