// libet_runner: an ExecuTorch .pte behind a C interface, linked against the runtime libraries alone (no
// libtorch), so the bundle's run.py drives it through ctypes in its own process. (A separate executable
// fed over a pipe would need the board to exec an aarch64 program, which qemu-user cannot do for a
// guest process, and costs a copy per image.)
//
//   void* et_open(const char* pte, int threads)    NULL on failure: et_error() says why
//   uint64_t et_input_numel(void*), et_output_numel(void*)
//   int et_run(void*, const float* input, float* output)    0 on success
//   void et_close(void*)
//
// The forward method's first input is float32 with a static shape; inputs are contiguous. Kernels and the
// XNNPACK delegate register themselves when their libraries load (linked --no-as-needed).
#include <executorch/extension/data_loader/file_data_loader.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

// The thread pool's header is not among the wheel's headers; this is its public entry point (what the Python
// runtime's _unsafe_reset_threadpool calls), declared as libexecutorch_threadpool.so exports it.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::aten::TensorImpl;
using executorch::extension::FileDataLoader;
using executorch::extension::MallocMemoryAllocator;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::MemoryManager;
using executorch::runtime::Method;
using executorch::runtime::Program;
using executorch::runtime::Span;

namespace {

thread_local char last_error[512] = "";

void set_error(const char* what, Error err) {
  std::snprintf(last_error, sizeof(last_error), "%s (ExecuTorch error 0x%x)", what, static_cast<unsigned>(err));
}

struct Runner {
  std::unique_ptr<FileDataLoader> loader;
  std::unique_ptr<Program> program;
  std::vector<std::unique_ptr<uint8_t[]>> buffers;
  std::vector<Span<uint8_t>> spans;
  std::unique_ptr<HierarchicalAllocator> planned;
  MallocMemoryAllocator method_allocator;
  MallocMemoryAllocator temp_allocator;
  std::unique_ptr<MemoryManager> memory;
  std::unique_ptr<Method> method;
  std::vector<TensorImpl::SizesType> sizes;
  std::vector<TensorImpl::DimOrderType> order;
  std::vector<TensorImpl::StridesType> strides;
  std::vector<float> input;
  std::unique_ptr<TensorImpl> impl;
  uint64_t in_numel = 1;
  uint64_t out_numel = 0;
};

Runner* open_runner(const char* path) {
  auto r = std::make_unique<Runner>();
  auto loader = FileDataLoader::from(path);
  if (!loader.ok()) return set_error("cannot open the model file", loader.error()), nullptr;
  r->loader = std::make_unique<FileDataLoader>(std::move(loader.get()));
  auto program = Program::load(r->loader.get(), Program::Verification::InternalConsistency);
  if (!program.ok()) return set_error("not a loadable .pte program", program.error()), nullptr;
  r->program = std::make_unique<Program>(std::move(program.get()));
  auto meta = r->program->method_meta("forward");
  if (!meta.ok()) return set_error("the program has no forward method", meta.error()), nullptr;
  for (size_t i = 0; i < meta->num_memory_planned_buffers(); ++i) {
    size_t size = static_cast<size_t>(meta->memory_planned_buffer_size(i).get());
    r->buffers.emplace_back(new uint8_t[size]);
    r->spans.emplace_back(r->buffers.back().get(), size);
  }
  r->planned = std::make_unique<HierarchicalAllocator>(Span<Span<uint8_t>>(r->spans.data(), r->spans.size()));
  r->memory = std::make_unique<MemoryManager>(&r->method_allocator, r->planned.get(), &r->temp_allocator);
  auto method = r->program->load_method("forward", r->memory.get());
  if (!method.ok()) return set_error("cannot load the forward method (a kernel or delegate missing?)", method.error()), nullptr;
  r->method = std::make_unique<Method>(std::move(method.get()));

  auto in_meta = meta->input_tensor_meta(0);
  if (!in_meta.ok() || in_meta->scalar_type() != ScalarType::Float) {
    std::snprintf(last_error, sizeof(last_error), "the model's first input is not a float32 tensor");
    return nullptr;
  }
  auto in_sizes = in_meta->sizes();
  auto in_order = in_meta->dim_order();
  r->sizes.assign(in_sizes.begin(), in_sizes.end());
  r->order.assign(in_order.begin(), in_order.end());
  r->strides.resize(r->sizes.size());
  for (size_t d = r->sizes.size(); d-- > 0;) {
    r->strides[d] = static_cast<TensorImpl::StridesType>(r->in_numel);
    r->in_numel *= static_cast<uint64_t>(r->sizes[d]);
  }
  r->input.assign(r->in_numel, 0.0f);
  r->impl = std::make_unique<TensorImpl>(ScalarType::Float, static_cast<ssize_t>(r->sizes.size()), r->sizes.data(),
                                         r->input.data(), r->order.data(), r->strides.data());
  // One run on zeros tells the output's size.
  Error err = r->method->set_input(EValue(Tensor(r->impl.get())), 0);
  if (err != Error::Ok) return set_error("the input does not fit the method", err), nullptr;
  if ((err = r->method->execute()) != Error::Ok) return set_error("the first run failed", err), nullptr;
  r->out_numel = static_cast<uint64_t>(r->method->get_output(0).toTensor().numel());
  return r.release();
}

}  // namespace

extern "C" {

const char* et_error() { return last_error; }

void* et_open(const char* path, int threads) {
  executorch::runtime::runtime_init();
  if (threads > 0) executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);
  return open_runner(path);
}

uint64_t et_input_numel(void* handle) { return static_cast<Runner*>(handle)->in_numel; }

uint64_t et_output_numel(void* handle) { return static_cast<Runner*>(handle)->out_numel; }

int et_run(void* handle, const float* input, float* output) {
  auto* r = static_cast<Runner*>(handle);
  std::memcpy(r->input.data(), input, r->in_numel * sizeof(float));
  Error err = r->method->set_input(EValue(Tensor(r->impl.get())), 0);
  if (err != Error::Ok) return set_error("set_input failed", err), 1;
  if ((err = r->method->execute()) != Error::Ok) return set_error("execute failed", err), 1;
  std::memcpy(output, r->method->get_output(0).toTensor().const_data_ptr<float>(), r->out_numel * sizeof(float));
  return 0;
}

void et_close(void* handle) { delete static_cast<Runner*>(handle); }

}  // extern "C"
