#include "trident/parallel/pipeline.hpp"

#include <algorithm>
#include <chrono>
#include <deque>

#include "trident/core/allocator.hpp"
#include "trident/core/backend.hpp"
#include "trident/core/ops.hpp"
#include "trident/trace/trace.hpp"

namespace trident {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The state of one stage during one step: the micro-batches whose forward ran and whose
// backward has not (their input leaf and output), the receives posted ahead and the sends not
// yet known to be complete. Both schedules are sequences of forward(i) and backward(i) calls
// on it; the forwards and the backwards each come in micro-batch order.
class StageStep {
 public:
  StageStep(PipelineStage& stage, const std::vector<MicroBatch>& micro_batches, Communicator& pp,
            const BeforeBackwardFn& before_backward)
      : stage_(stage),
        mbs_(micro_batches),
        pp_(pp),
        before_backward_(before_backward),
        allocator_(allocator_for(stage.device())),
        start_(Clock::now()) {
    allocator_.reset_peak();
    base_bytes_ = allocator_.stats().in_use_bytes;
    agree_on_shape();
    slots_.resize(static_cast<size_t>(m_));
  }

  int micro_batches() const { return m_; }

  void forward(int i) {
    Slot& slot = slots_[static_cast<size_t>(i)];
    if (stage_.is_first()) {
      const Tensor& ids = mbs_[static_cast<size_t>(i)].inputs;
      TRIDENT_CHECK(ids.defined() && ids.shape() == Shape({b_, T_}), "pipeline stage 0: inputs of ",
                    "micro-batch ", i, " are ", ids.defined() ? ids.shape_str() : "undefined",
                    ", micro-batch 0's are (", b_, ", ", T_, ")");
      slot.input = ids;
    } else {
      slot.input = take(activations_, i, pp_.rank() - 1, kPipelineActivationTag, act_shape_);
      slot.input.requires_grad_(true);
    }
    const auto t0 = Clock::now();
    trace::Span span("forward", trace::Category::Compute);
    span.arg("micro", i);
    span.arg("stage", pp_.rank());
    const trace::DeviceSpan gpu_span("forward", trace::Category::Compute, stage_.device());
    Tensor out = stage_.forward(slot.input);
    if (stage_.is_last()) {
      const Tensor& targets = mbs_[static_cast<size_t>(i)].targets;
      TRIDENT_CHECK(targets.defined() && targets.shape() == Shape({b_, T_}), "pipeline stage ",
                    pp_.rank(), " (last): targets of micro-batch ", i, " are ",
                    targets.defined() ? targets.shape_str() : "undefined",
                    ", the inputs on stage 0 are (", b_, ", ", T_, ")");
      const Tensor loss = stage_.loss(out, targets, 1.0 / m_);
      // Kept on the device and read back once, in finish(): no host synchronisation per
      // micro-batch.
      if (!losses_.defined()) losses_ = Tensor::zeros({m_}, DType::F32, loss.device());
      {
        NoGradGuard no_grad;
        losses_.slice(0, i, i + 1).copy_(loss.detach().reshape({1}).to(DType::F32));
      }
      slot.output = loss * (1.0 / m_);
    } else {
      TRIDENT_CHECK(out.shape() == act_shape_ && out.dtype() == DType::F32, "pipeline stage ",
                    pp_.rank(), ": output of micro-batch ", i, " is ", out.shape_str(), " ",
                    dtype_name(out.dtype()), ", the stage interface says ",
                    shape_to_string(act_shape_), " f32");
      slot.output = out.contiguous();
    }
    stats_.forward_s += seconds_since(t0);
    in_flight_++;
    stats_.max_in_flight = std::max(stats_.max_in_flight, in_flight_);
    if (!stage_.is_last()) send(slot.output.detach(), pp_.rank() + 1, kPipelineActivationTag);
  }

  void backward(int i) {
    Slot& slot = slots_[static_cast<size_t>(i)];
    TRIDENT_CHECK(slot.output.defined(), "pipeline: backward of micro-batch ", i,
                  " before its forward");
    Tensor grad;
    if (!stage_.is_last())
      grad = take(gradients_, i, pp_.rank() + 1, kPipelineGradientTag, act_shape_);
    const auto t0 = Clock::now();
    trace::Span span("backward", trace::Category::Compute);
    span.arg("micro", i);
    span.arg("stage", pp_.rank());
    const trace::DeviceSpan gpu_span("backward", trace::Category::Compute, stage_.device());
    if (before_backward_) before_backward_(i, i == m_ - 1);
    slot.output.backward(grad);
    stats_.backward_s += seconds_since(t0);
    if (!stage_.is_first()) {
      const Tensor g = slot.input.grad();
      TRIDENT_CHECK(g.defined(), "pipeline stage ", pp_.rank(), ": micro-batch ", i,
                    "'s output does not depend on its input (no gradient to send back)");
      send(g.contiguous(), pp_.rank() - 1, kPipelineGradientTag);
    }
    slot = Slot{};  // frees this micro-batch's activations
    in_flight_--;
    reap_sends();
  }

  // Forward only: micro-batch i's activations are dropped once its forward ran (and its
  // output was sent on).
  void release(int i) {
    slots_[static_cast<size_t>(i)] = Slot{};
    in_flight_--;
    reap_sends();
  }

  PipelineStepStats finish() {
    for (auto& s : sends_) wait(s.work, "wait send");
    sends_.clear();
    // The stage's queued work drains here, once per step (a no-op on the CPU): the loss is read
    // back, and device transfers (NCCL, whose wait() only ordered the compute stream) report
    // how long the compute stream stood waiting for them.
    backend_for(stage_.device()).synchronize();
    for (const auto& work : waited_) {
      const double stall = work->stall_seconds();
      if (stall > 0) stats_.comm_wait_s += stall;
    }
    waited_.clear();
    double loss_sum = 0;
    if (losses_.defined()) {
      for (const float l : losses_.to_vector<float>()) loss_sum += l;
    }
    // Every stage learns the loss; the stages finish together, so an early one's wait for the
    // pipeline's drain is counted as idle.
    double loss = stage_.is_last() ? loss_sum / m_ : 0.0;
    const auto t0 = Clock::now();
    trace::Span span("pipeline drain", trace::Category::Idle);
    pp_.all_reduce(&loss, 1, DType::F64, ReduceOp::Sum);
    stats_.comm_wait_s += seconds_since(t0);
    stats_.loss = loss;
    stats_.num_micro_batches = m_;
    const size_t peak = allocator_.stats().peak_bytes;
    stats_.peak_activation_bytes = peak > base_bytes_ ? peak - base_bytes_ : 0;
    stats_.step_s = seconds_since(start_);
    return stats_;
  }

 private:
  struct Slot {
    Tensor input;   // ids on the first stage, the received leaf elsewhere
    Tensor output;  // the sent activation, or the scaled loss on the last stage
  };
  struct Transfer {
    int micro;
    Tensor buffer;  // kept alive until the operation finished
    std::shared_ptr<Work> work;
  };

  // Stage 0's micro-batch count and (b, T) reach every stage, so a mismatch fails with a message
  // on the stage that disagrees instead of hanging the pipeline.
  void agree_on_shape() {
    int64_t header[3] = {static_cast<int64_t>(mbs_.size()), 0, 0};
    if (stage_.is_first()) {
      TRIDENT_CHECK(!mbs_.empty(), "pipeline: a step needs at least one micro-batch");
      const Tensor& ids = mbs_[0].inputs;
      TRIDENT_CHECK(ids.defined() && ids.dim() == 2,
                    "pipeline stage 0: micro-batch inputs must be (b, T), got ",
                    ids.defined() ? ids.shape_str() : "undefined");
      header[1] = ids.size(0);
      header[2] = ids.size(1);
    }
    const auto t0 = Clock::now();
    {
      trace::Span span("pipeline start", trace::Category::Idle);
      pp_.broadcast(header, 3, DType::I64, 0);
    }
    stats_.comm_wait_s += seconds_since(t0);
    TRIDENT_CHECK(static_cast<int64_t>(mbs_.size()) == header[0], "pipeline stage ", pp_.rank(),
                  " was given ", mbs_.size(), " micro-batches, stage 0 ", header[0]);
    m_ = static_cast<int>(header[0]);
    b_ = header[1];
    T_ = header[2];
    act_shape_ = stage_.activation_shape(b_, T_);
  }

  // Blocked on a neighbour stage: the bubble in the timeline (`what` names the message). Host
  // work blocks here; device work orders the compute stream and its stall is added in finish().
  void wait(const std::shared_ptr<Work>& work, const char* what) {
    const auto t0 = Clock::now();
    trace::Span span(what, trace::Category::Idle);
    work->wait();
    stats_.comm_wait_s += seconds_since(t0);
    waited_.push_back(work);
  }

  void post_recv(std::deque<Transfer>& q, int micro, int src, int tag, const Shape& shape) {
    Tensor buf = Tensor::empty(shape, DType::F32, stage_.device());
    auto work =
        pp_.recv_async(buf.raw_data(), static_cast<size_t>(buf.numel()), DType::F32, src, tag);
    q.push_back(Transfer{micro, std::move(buf), std::move(work)});
  }

  // Micro-batch i's message from `src`, with micro-batch i + 1's receive posted before waiting.
  Tensor take(std::deque<Transfer>& q, int i, int src, int tag, const Shape& shape) {
    const int next = q.empty() ? i : q.back().micro + 1;
    for (int k = next; k <= std::min(i + 1, m_ - 1); ++k) post_recv(q, k, src, tag, shape);
    Transfer t = std::move(q.front());
    q.pop_front();
    TRIDENT_CHECK(t.micro == i, "pipeline: received micro-batch ", t.micro, " where ", i,
                  " was expected");
    wait(t.work, tag == kPipelineActivationTag ? "wait activation" : "wait gradient");
    return t.buffer;
  }

  void send(const Tensor& t, int dst, int tag) {
    auto work = pp_.send_async(t.raw_data(), static_cast<size_t>(t.numel()), DType::F32, dst, tag);
    sends_.push_back(Transfer{-1, t, std::move(work)});
  }

  // Drops the sends that completed, oldest first, freeing their buffers.
  void reap_sends() {
    while (!sends_.empty() && sends_.front().work->test()) {
      sends_.front().work->wait();  // rethrows a failure
      sends_.pop_front();
    }
  }

  PipelineStage& stage_;
  const std::vector<MicroBatch>& mbs_;
  Communicator& pp_;
  const BeforeBackwardFn& before_backward_;
  Allocator& allocator_;
  Clock::time_point start_;
  size_t base_bytes_ = 0;
  int m_ = 0;
  int64_t b_ = 0, T_ = 0;
  Shape act_shape_;
  std::vector<Slot> slots_;
  std::deque<Transfer> activations_, gradients_, sends_;
  int in_flight_ = 0;
  Tensor losses_;  // last stage: (m) each micro-batch's loss, on the device
  std::vector<std::shared_ptr<Work>> waited_;  // for the stall times of device transfers
  PipelineStepStats stats_;
};

void check_communicator(const PipelineStage& stage, const Communicator& pp) {
  TRIDENT_CHECK(
      stage.is_first() == (pp.rank() == 0) && stage.is_last() == (pp.rank() == pp.size() - 1),
      "pipeline: the stage (first ", stage.is_first(), ", last ", stage.is_last(),
      ") does not match its rank ", pp.rank(), " of ", pp.size(), " on communicator '", pp.name(),
      "'");
}

}  // namespace

int one_f_one_b_warmup(int stage, int stages, int micro_batches) {
  return std::max(0, std::min(stages - stage - 1, micro_batches));
}

PipelineStepStats PipelineScheduleGPipe::run(PipelineStage& stage,
                                             const std::vector<MicroBatch>& micro_batches,
                                             Communicator& pp,
                                             const BeforeBackwardFn& before_backward) {
  check_communicator(stage, pp);
  StageStep step(stage, micro_batches, pp, before_backward);
  const int m = step.micro_batches();
  for (int i = 0; i < m; ++i) step.forward(i);
  for (int i = 0; i < m; ++i) step.backward(i);
  return step.finish();
}

PipelineStepStats PipelineSchedule1F1B::run(PipelineStage& stage,
                                            const std::vector<MicroBatch>& micro_batches,
                                            Communicator& pp,
                                            const BeforeBackwardFn& before_backward) {
  check_communicator(stage, pp);
  StageStep step(stage, micro_batches, pp, before_backward);
  const int m = step.micro_batches();
  const int warmup = one_f_one_b_warmup(pp.rank(), pp.size(), m);
  for (int i = 0; i < warmup; ++i) step.forward(i);
  for (int i = 0; i < m - warmup; ++i) {
    step.forward(warmup + i);
    step.backward(i);
  }
  for (int i = m - warmup; i < m; ++i) step.backward(i);
  return step.finish();
}

PipelineStepStats run_pipeline_forward(PipelineStage& stage,
                                       const std::vector<MicroBatch>& micro_batches,
                                       Communicator& pp) {
  check_communicator(stage, pp);
  NoGradGuard no_grad;
  const BeforeBackwardFn no_backward;  // outlives the step, which holds a reference to it
  StageStep step(stage, micro_batches, pp, no_backward);
  for (int i = 0; i < step.micro_batches(); ++i) {
    step.forward(i);
    step.release(i);
  }
  return step.finish();
}

std::vector<std::string> pipeline_schedule_names() {
  return {"gpipe", "1f1b"};
}

std::unique_ptr<PipelineSchedule> make_pipeline_schedule(const std::string& name) {
  if (name == "gpipe") return std::make_unique<PipelineScheduleGPipe>();
  if (name == "1f1b") return std::make_unique<PipelineSchedule1F1B>();
  throw Error(str_cat("unknown pipeline schedule '", name, "': choose gpipe or 1f1b"));
}

}  // namespace trident
