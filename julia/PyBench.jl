"""
The Flux side of pybench, loaded into a worker through juliacall (`pybench/backends/flux/backend.py`).

Models come from Metalhead with their default (random, seeded) initialisation, in Float32 (Float16
where fp16 is asked on CUDA).  Every function Python calls returns `nothing`, a plain number, string, array or
`Dict`, so nothing large is converted at the language boundary.  Names called from Python are
listed in `pybench.backends.flux.backend.JULIA_API`; a test checks they exist here with that arity.
"""
module PyBench

using Flux, Metalhead, Zygote, Random, LinearAlgebra
import Optimisers  # the rule (Momentum); Flux.setup and Flux.update! apply it
using CUDA, cuDNN  # cuDNN provides NNlib's GPU convolutions, pooling and batchnorm

const NCLASSES = 1000

"One prepared workload: model, inputs and the state of the phase group being measured."
mutable struct Bench
    model::Any
    x::Any
    dy::Any             # all-ones output gradient (train group)
    y::Any              # one-hot targets (step group); nothing for a single layer
    back::Any           # pullback of the current train iteration, or nothing
    opt_state::Any      # optimiser state of the step group, or nothing
    wrt_input::Bool     # single layers: differentiate w.r.t. the input too, as PyTorch does
    cuda::Bool
    training::Union{Bool,Nothing}
end

## setup

const CUDA_INDEX = Ref(-1)  # 0-based CUDA device of this worker, -1: CPU

"""Thread pools, device and precision, before anything is built.  (Names avoid `setup` and
`synchronize`, which packages loaded here export.)

CPU threads: one level of parallelism, never both.  NNlib's im2col convolution spawns `nthreads()`
tasks that each call BLAS, so Julia threads x BLAS threads would oversubscribe the cores; its
weight gradient, though, loops over the batch in one task, where only BLAS threads help.  pybench
therefore starts Julia with one thread and gives BLAS `threads`; should Julia have several
threads, BLAS gets one.  `environment` records both counts.

`tf32`: CUDA.jl keeps cuBLAS at full FP32 except under `FAST_MATH`, so `--tf32` sets it, and
matrix products use TF32 as PyTorch's do (what else FAST_MATH allows, `environment` records).
Without it, Python sets `NVIDIA_TF32_OVERRIDE=0` before the libraries load, which keeps cuDNN's
convolutions at FP32 too."""
function configure(threads::Integer, cuda_index::Integer, tf32::Bool)
    BLAS.set_num_threads(Threads.nthreads() > 1 ? 1 : threads)
    if cuda_index >= 0
        CUDA.functional() || error("CUDA is not functional in Julia: $(cuda_reason())")
        # Checked here: Flux's device selection would only say "No functional GPU device found!".
        cuDNN.has_cudnn() || error("cuDNN is not functional in Julia (CUDA.jl is): cuDNN.jl found " *
                                   "no libcudnn for this platform and CUDA (its load error is on stderr)")
        CUDA.device!(cuda_index)
        CUDA.math_mode!(tf32 ? CUDA.FAST_MATH : CUDA.DEFAULT_MATH; precision = :TensorFloat32)
    end
    CUDA_INDEX[] = cuda_index
    return nothing
end

"Flux's device movement (MLDataDevices): the configured GPU (1-based id there), or the CPU."
target_device(cuda::Bool) = cuda ? gpu_device(CUDA_INDEX[] + 1; force = true) : cpu_device()

"Why CUDA.jl is not functional, in one line."
function cuda_reason()
    try
        CUDA.functional(true)
        return "unknown reason"
    catch err
        return first(split(sprint(showerror, err), '\n'))
    end
end

## models

"""A Metalhead model with fresh seeded weights.  `VGG(depth)` hard-codes a 224x224 input for its
classifier, so VGG is built through `Metalhead.vgg` with the real image size; ResNet ends in global
pooling and takes any size."""
function build_model(family::AbstractString, depth::Integer, batchnorm::Bool,
                     image_size::Integer, seed::Integer)
    Random.seed!(seed)
    if family == "vgg"
        layers = Metalhead.vgg((image_size, image_size); config = Metalhead.VGG_CONFIGS[depth],
                               batchnorm, nclasses = NCLASSES, dropout_prob = 0.5)
        return Metalhead.VGG(layers)
    elseif family == "resnet"
        return ResNet(depth; nclasses = NCLASSES)
    end
    error("unknown model family $(repr(family))")
end

"One layer of the per-layer suite, defined as `pybench.backends.pytorch.backend.build_module` defines it."
function build_layer(family::AbstractString, kernel::Integer, stride::Integer,
                     cin::Integer, cout::Integer, seed::Integer)
    Random.seed!(seed)
    k, pad = (kernel, kernel), kernel ÷ 2
    family == "conv" && return Conv(k, cin => cout; stride, pad)
    family == "maxpool" && return MaxPool(k; stride, pad)
    family == "meanpool" && return MeanPool(k; stride, pad)  # divides by the full window, as torch's count_include_pad
    family == "batchnorm" && return BatchNorm(cin)
    family == "dense" && return Dense(cin => cout)
    error("unknown layer family $(repr(family))")
end

"Trainable parameters, as torch's `parameters()` counts them (BatchNorm statistics excluded)."
param_count(model) = sum(length, Flux.trainables(model); init = 0)

## the prepared workload

"""Move model, input and targets to the device once.  `x` arrives as a column-major (W, H, C, N)
view of the numpy NCHW batch (same memory, reversed dims), copied here out of Python's buffer;
`labels` as the numpy vector of 0-based class ids, or `nothing` for a single layer."""
function prepare(model, x::AbstractArray, labels::Union{AbstractVector{<:Integer},Nothing},
                 dtype::AbstractString, cuda::Bool, is_layer::Bool)
    T = dtype == "fp32" ? Float32 :
        dtype == "fp16" && cuda ? Float16 :
        error("Flux backend runs fp32, or fp16 on CUDA; got $dtype on $(cuda ? "cuda" : "cpu")")
    dev = target_device(cuda)
    xh = Array{T}(x)
    m = T === Float16 ? f16(model) : model
    ysize = is_layer ? Flux.outputsize(m, size(xh)) : (NCLASSES, size(xh, ndims(xh)))
    # Dense one-hot targets typed like the output: the loss is plain broadcasting on every device.
    y = labels === nothing ? nothing :
        dev(Array{T}(Flux.onehotbatch(collect(Int, labels), 0:NCLASSES-1)))
    b = Bench(dev(m), dev(xh), dev(ones(T, ysize)), y, nothing, nothing, is_layer, cuda, nothing)
    device_sync(b)
    return b
end

device_sync(b::Bench) = (b.cuda && CUDA.synchronize(); nothing)

"Train or test mode, set explicitly (outside a gradient Flux's automatic mode is test mode)."
function set_mode!(b::Bench, train::Bool)
    if b.training !== train
        train ? trainmode!(b.model) : testmode!(b.model)
        b.training = train
    end
    return nothing
end

## the timed steps

"""Untimed, before every train iteration, like PyTorch's `zero_grad`: Zygote accumulates nothing
(each pullback returns fresh gradients), so clearing means dropping the last pullback."""
function zero_grad!(b::Bench)
    b.back = nothing
    set_mode!(b, true)
    return nothing
end

function forward!(b::Bench)
    x = b.x
    if b.wrt_input
        _, b.back = Zygote.pullback((m, x) -> m(x), b.model, x)
    else
        _, b.back = Zygote.pullback(m -> m(x), b.model)
    end
    return nothing
end

"The backward pass of the preceding forward, seeded with the pre-allocated all-ones gradient."
function backward!(b::Bench)
    b.back(b.dy)
    b.back = nothing
    return nothing
end

"""One training step as Flux users write it: loss and gradient, then the optimiser's update.  The
first (excluded) call creates the optimiser state, as PyTorch's first step creates its optimiser."""
function step!(b::Bench)
    b.y === nothing && error("the step group needs labels: it runs whole models only")
    if b.opt_state === nothing
        # SGD with momentum, pybench.backends.base.SGD_LR and SGD_MOMENTUM (a test ties them):
        # Optimisers keeps v = lr * torch's buffer, which gives the same update.
        b.opt_state = Flux.setup(Optimisers.Momentum(0.01, 0.9), b.model)
    end
    x, y = b.x, b.y
    _, grads = Flux.withgradient(m -> Flux.logitcrossentropy(m(x), y), b.model)
    Flux.update!(b.opt_state, b.model, grads[1])
    return nothing
end

function inference!(b::Bench)
    b.model(b.x)
    return nothing
end

"""ns of one call of `f(b)`, bracketed by device synchronisation so queued work neither leaks in
nor escapes, and the ns Julia's GC spent inside it (`Base.gc_num`, as `@timed` reads it)."""
function timed(f, b::Bench)
    device_sync(b)
    gc0 = Base.gc_num().total_time
    t0 = time_ns()
    f(b)
    device_sync(b)
    t1 = time_ns()
    return Int64(t1 - t0), Int64(Base.gc_num().total_time - gc0)
end

## the protocol's sampler: the clock runs in Julia, so juliacall's per-call cost stays out of samples

const GC_SUFFIX = ".gc"  # pybench.protocol.phases.GC_SUFFIX: a phase's GC ns per sample

"""`n` iterations of a phase group (`pybench.protocol.phases.PHASES`): measured phase -> ns per iteration,
and phase * GC_SUFFIX -> ns of GC inside each.  Julia's garbage collector runs where allocation
triggers it (CUDA.jl's synchronize may collect too), inside the timed regions: that is what Flux
users pay, so it stays in, and its share is reported."""
function sample(b::Bench, group::AbstractString, n::Integer)
    steps = group == "train" ? ("forward" => forward!, "backward" => backward!) :
            group == "step" ? ("step" => step!,) :
            group == "inference" ? ("inference" => inference!,) :
            error("unknown phase group $(repr(group)): PyBench runs train, step and inference")
    out = Dict{String,Vector{Int64}}()
    for (phase, _) in steps
        out[phase], out[phase * GC_SUFFIX] = Int64[], Int64[]
    end
    for _ in 1:n
        group == "train" ? zero_grad!(b) : set_mode!(b, group == "step")
        for (phase, f) in steps
            ns, gc = timed(f, b)
            push!(out[phase], ns)
            push!(out[phase * GC_SUFFIX], gc)
        end
    end
    return out
end

"""Untimed, after a group's last sample: drop what it held (pullback, optimiser state) and collect,
so the next group's memory window starts without it.  A full collection: after many iterations the
group's arrays sit in the old generation, which an incremental one skips; on CUDA their finalizers
return the memory to the pool, and `CUDA.reclaim` hands the pool's cached memory back to the
driver, so pool figures do not carry over into the next group."""
function finish(b::Bench, group::AbstractString)
    b.back = nothing
    b.opt_state = nothing
    GC.gc(true)
    b.cuda && CUDA.reclaim()
    return nothing
end

## environment and memory

version_of(m::Module) = string(pkgversion(m))

"Flux's version, as the results tables title the row."
version() = version_of(Flux)

# The loss is logitcrossentropy, whose logsoftmax runs CUDNN_SOFTMAX_LOG (no softmax mode to speed
# up), and NNlib keeps softmax ACCURATE under every math mode: only the conversion differs.
const FAST_MATH_NOTE = "--tf32 sets CUDA.jl's FAST_MATH: matrix products use TF32 as PyTorch's do, " *
    "but cuDNN may also down-convert FP32 convolutions to FP16 (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION); " *
    "PyTorch's --tf32 allows TF32 only"

"""cuDNN's version from its integer: 8.x encodes major*1000 + minor*100 + patch, 9.x major*10000 +
minor*100 + patch (91000 is 9.10.0).  cuDNN.jl 1.x decodes every version the 8.x way, which
makes 9.20.0 read "92.0.0"."""
function cudnn_version(raw::Integer)
    major, rest = raw >= 90000 ? divrem(raw, 10000) : divrem(raw, 1000)
    minor, patch = divrem(rest, 100)
    return VersionNumber(major, minor, patch)
end

function environment(b::Bench)
    env = Dict{String,Any}(
        "framework" => "Flux",
        "version" => version(),
        "julia" => string(VERSION),
        "metalhead" => version_of(Metalhead),
        "zygote" => version_of(Zygote),
        "optimisers" => version_of(Optimisers),
        "nnlib" => version_of(Flux.NNlib),
        "cuda_jl" => version_of(CUDA),
        "julia_threads" => Threads.nthreads(),
        "blas_threads" => BLAS.get_num_threads(),
        "blas" => join((basename(l.libname) for l in BLAS.get_config().loaded_libs), ", "),
        "cuda_functional" => CUDA.functional(),
    )
    if b.cuda  # descriptive only: a failure here must not fail the cell
        env["gpu"] = or_unknown(() -> CUDA.name(CUDA.device()))
        # The worker checks it against the GPU the cell names (a MIG slice's own UUID, bare as torch's).
        env["gpu_uuid"] = or_unknown(() -> string(CUDA.uuid(CUDA.device())))
        env["cuda"] = or_unknown(() -> string(CUDA.runtime_version()))
        env["cudnn"] = or_unknown(() -> string(cudnn_version(cuDNN.cudnnGetVersion())))
        env["math_mode"] = or_unknown(() -> string(CUDA.math_mode()))
        env["math_precision"] = or_unknown(() -> string(CUDA.math_precision()))
        # Pool high-water marks exist only with the stream-ordered pool (JULIA_CUDA_MEMORY_POOL=cuda).
        env["cuda_stream_ordered_pool"] = or_unknown(() -> CUDA.stream_ordered(CUDA.device()))
        CUDA.math_mode() == CUDA.FAST_MATH && (env["precision_note"] = FAST_MATH_NOTE)
    end
    return env
end

function or_unknown(f)
    try
        return f()
    catch err
        return "unknown ($(typeof(err)))"
    end
end

"The device's stream-ordered memory pool (CUDA.jl's own), or nothing: CPU, or another allocator."
function cuda_pool(b::Bench)
    b.cuda || return nothing
    dev = CUDA.device()
    return CUDA.stream_ordered(dev) ? CUDA.memory_pool(dev) : nothing
end

function memory_reset(b::Bench)
    pool = cuda_pool(b)
    if pool !== nothing  # the driver only allows resetting high-water marks to zero
        CUDA.attribute!(pool, CUDA.MEMPOOL_ATTR_USED_MEM_HIGH, UInt64(0))
        CUDA.attribute!(pool, CUDA.MEMPOOL_ATTR_RESERVED_MEM_HIGH, UInt64(0))
    end
    return nothing
end

"""Memory since `memory_reset`, by kind.  The pool's used high-water mark includes arrays that are
garbage but not yet collected (freed only when Julia's GC finalizes them), so it is no equivalent
of torch's max_memory_allocated, and is named so.  Julia's heap keeps no peak: its live size now."""
function memory_peak(b::Bench)
    out = Dict{String,Int}("julia_heap_live_snapshot" => Base.gc_live_bytes())
    pool = cuda_pool(b)
    if pool !== nothing
        used = max(CUDA.attribute(UInt64, pool, CUDA.MEMPOOL_ATTR_USED_MEM_HIGH),
                   CUDA.attribute(UInt64, pool, CUDA.MEMPOOL_ATTR_USED_MEM_CURRENT))
        out["cuda_pool_used_high_incl_garbage"] = Int(used)
        out["cuda_pool_reserved_high"] = Int(CUDA.attribute(UInt64, pool, CUDA.MEMPOOL_ATTR_RESERVED_MEM_HIGH))
    end
    return out
end

include("parity.jl")  # loading torchvision weights into the Metalhead model, for `pybench parity`

end # module
