# Part of module PyBench (included by PyBench.jl).

## parity: torchvision weights (converted in Python, pybench/backends/flux/convert.py) into the Metalhead model

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
