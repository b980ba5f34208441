"""
The Flux side of pybench, loaded into a worker through juliacall (`pybench/backends/flux.py`).

Models come from Metalhead with their default (random, seeded) initialisation, Float32
throughout.  Every function Python calls returns `nothing`, a plain number, string, array or
`Dict`, so nothing large is converted at the language boundary.  Names called from Python are
listed in `pybench.backends.flux.JULIA_API`; a test checks they exist here with that arity.
"""
module PyBench

using Flux, Metalhead, Zygote, Random, LinearAlgebra
using CUDA, cuDNN  # cuDNN provides NNlib's GPU convolutions, pooling and batchnorm

const NCLASSES = 1000

"One prepared workload: model, input and all-ones output gradient, all on the device."
mutable struct Bench
    model::Any
    x::Any
    dy::Any
    back::Any           # pullback of the last forward, or nothing
    wrt_input::Bool     # single layers: differentiate w.r.t. the input too, as PyTorch does
    cuda::Bool
    training::Union{Bool,Nothing}
end

## setup

const CUDA_INDEX = Ref(-1)  # 0-based CUDA device of this worker, -1: CPU

"""Thread pools and device, before anything is built.  (Names avoid `setup`/`synchronize`, which
packages loaded here export.)"""
function configure(blas_threads::Integer, cuda_index::Integer)
    BLAS.set_num_threads(blas_threads)
    if cuda_index >= 0
        CUDA.functional() || error("CUDA is not functional in Julia: $(cuda_reason())")
        CUDA.device!(cuda_index)
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

"One layer of the per-layer suite, defined as `pybench.backends.pytorch.build_module` defines it."
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

## the timed steps

"""Move model and input to the device once; `x` arrives as a column-major (W, H, C, N) view of
the numpy NCHW batch (same memory, reversed dims), copied here out of Python's buffer."""
function prepare(model, x::AbstractArray, dtype::AbstractString, cuda::Bool, is_layer::Bool)
    T = dtype == "fp32" ? Float32 :
        dtype == "fp16" && cuda ? Float16 :
        error("Flux backend runs fp32, or fp16 on CUDA; got $dtype on $(cuda ? "cuda" : "cpu")")
    dev = target_device(cuda)
    xh = Array{T}(x)
    m = T === Float16 ? f16(model) : model
    ysize = is_layer ? Flux.outputsize(model, size(xh)) : (NCLASSES, size(xh, ndims(xh)))
    b = Bench(dev(m), dev(xh), dev(ones(T, ysize)), nothing, is_layer, cuda, nothing)
    device_sync(b)
    return b
end

"""Gradients are not accumulated in Zygote: each pullback returns fresh ones, so clearing means
dropping the last pullback.  Sets train mode, untimed, like PyTorch's `zero_grad` step."""
function zero_grad(b::Bench)
    b.back = nothing
    if b.training !== true
        trainmode!(b.model)  # explicit: outside a gradient Flux's automatic mode is test mode
        b.training = true
    end
    return nothing
end

function forward(b::Bench)
    x = b.x
    if b.wrt_input
        _, b.back = Zygote.pullback((m, x) -> m(x), b.model, x)
    else
        _, b.back = Zygote.pullback(m -> m(x), b.model)
    end
    return nothing
end

"The backward pass of the preceding forward, seeded with the pre-allocated all-ones gradient."
function backward(b::Bench)
    b.back(b.dy)
    b.back = nothing
    return nothing
end

function inference(b::Bench)
    if b.training !== false
        testmode!(b.model)
        b.training = false
    end
    b.model(b.x)
    return nothing
end

device_sync(b::Bench) = (b.cuda && CUDA.synchronize(); nothing)

## sampling loops: the clock runs in Julia, so per-call juliacall overhead stays out of samples

"`n` train iterations: [forward_ns, backward_ns, forward_ns, ...], each bracketed by synchronize."
function sample_train(b::Bench, n::Integer)
    out = Vector{Int64}(undef, 2n)
    for i in 1:n
        zero_grad(b)
        device_sync(b)
        t0 = time_ns()
        forward(b)
        device_sync(b)
        t1 = time_ns()
        backward(b)
        device_sync(b)
        t2 = time_ns()
        out[2i-1] = Int64(t1 - t0)
        out[2i] = Int64(t2 - t1)
    end
    return out
end

"`n` inference iterations, ns each."
function sample_inference(b::Bench, n::Integer)
    out = Vector{Int64}(undef, n)
    for i in 1:n
        device_sync(b)
        t0 = time_ns()
        inference(b)
        device_sync(b)
        out[i] = Int64(time_ns() - t0)
    end
    return out
end

## environment and memory

version_of(m::Module) = string(pkgversion(m))

function environment(b::Bench)
    env = Dict{String,Any}(
        "framework" => "Flux",
        "version" => version_of(Flux),
        "julia" => string(VERSION),
        "metalhead" => version_of(Metalhead),
        "zygote" => version_of(Zygote),
        "cuda_jl" => version_of(CUDA),
        "threads" => Threads.nthreads(),
        "blas_threads" => BLAS.get_num_threads(),
        "blas" => join((basename(l.libname) for l in BLAS.get_config().loaded_libs), ", "),
        "cuda_functional" => CUDA.functional(),
    )
    if b.cuda  # descriptive only: a failure here must not fail the cell
        env["gpu"] = describe(() -> CUDA.name(CUDA.device()))
        env["cuda"] = describe(() -> string(CUDA.runtime_version()))
        env["cudnn"] = describe(() -> string(cuDNN.version()))
        env["math_mode"] = describe(() -> string(CUDA.math_mode()))
    end
    return env
end

function describe(f)
    try
        return f()
    catch err
        return "unknown ($(typeof(err)))"
    end
end

"The device's stream-ordered memory pool, or nothing where CUDA.jl does not use one."
function cuda_pool()
    try
        return CUDA.memory_pool(CUDA.device())
    catch
        return nothing
    end
end

function memory_reset(b::Bench)
    pool = b.cuda ? cuda_pool() : nothing
    if pool !== nothing  # the driver only allows resetting high-water marks to zero
        CUDA.attribute!(pool, CUDA.MEMPOOL_ATTR_USED_MEM_HIGH, UInt64(0))
        CUDA.attribute!(pool, CUDA.MEMPOOL_ATTR_RESERVED_MEM_HIGH, UInt64(0))
    end
    return nothing
end

"Peaks since `memory_reset` (CUDA pool); Julia's heap is the live size now (it keeps no peak)."
function memory_peak(b::Bench)
    out = Dict{String,Int}("julia_gc_live" => Base.gc_live_bytes())
    pool = b.cuda ? cuda_pool() : nothing
    if pool !== nothing
        out["cuda_pool_used_high"] = Int(CUDA.attribute(UInt64, pool, CUDA.MEMPOOL_ATTR_USED_MEM_HIGH))
        out["cuda_pool_reserved_high"] = Int(CUDA.attribute(UInt64, pool, CUDA.MEMPOOL_ATTR_RESERVED_MEM_HIGH))
    end
    return out
end

## parity: torchvision weights (converted in Python, pybench/convert.py) into the Metalhead model

# Layers with state, in torchvision's module registration order.  Metalhead builds a residual
# block as Parallel(connection, shortcut, residual branch) while torchvision registers the branch
# before its `downsample`, hence the reversal.
torch_order(x) = Any[]
torch_order(l::Union{Conv,BatchNorm,Dense}) = Any[l]
torch_order(c::Chain) = reduce(vcat, map(torch_order, collect(c.layers)); init = Any[])
torch_order(p::Parallel) = reduce(vcat, map(torch_order, reverse(collect(p.layers))); init = Any[])
torch_order(m::Union{Metalhead.VGG,Metalhead.ResNet}) = torch_order(m.layers)

slots(l::Conv) = l.bias isa AbstractArray ? Any[l.weight, l.bias] : Any[l.weight]
slots(l::BatchNorm) = Any[l.γ, l.β, l.μ, l.σ²]
slots(l::Dense) = Any[l.weight, l.bias]

"Every array a converted torchvision state fills, in order (CPU model)."
param_slots(model) = reduce(vcat, map(slots, torch_order(model)); init = Any[])

"Describes the slots ('Conv weight (3, 3, 64, 64)', ...) so Python can report a mismatch."
function slot_names(model)
    names = String[]
    for l in torch_order(model), a in slots(l)
        push!(names, "$(nameof(typeof(l))) $(size(a))")
    end
    return names
end

function load_slot(slots::AbstractVector, i::Integer, a::AbstractArray)
    dest = slots[i]
    size(dest) == size(a) ||
        error("parameter $i: Flux expects size $(size(dest)), got $(size(a)) from PyTorch")
    copyto!(dest, Array{eltype(dest)}(a))
    return nothing
end

"Eval-mode output of a CPU model on the given (W, H, C, N) input, computed on the device."
function eval_output(model, x::AbstractArray, cuda::Bool)
    dev = target_device(cuda)
    m = dev(testmode!(model))
    y = m(dev(Array{Float32}(x)))
    return Array{Float32}(cpu_device()(y))
end

end # module
