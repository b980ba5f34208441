"""GPU identity without a GPU: what NVML and torch would report is faked (the inputs); the logic that
reads CUDA_VISIBLE_DEVICES, picks, pins and labels a GPU is the real one.  Data-sheet peaks by name."""

from __future__ import annotations

import sys

import pytest

from pybench.machine import devices
from pybench.backends.efficiency import gpu_peak_gflops
from pybench.machine.environment import capture
from pybench.machine.devices import (Device, cuda_devices, gpu_identity,
                                 gpu_memory_used, gpus, nvml_uuid_forms, parse_visible_devices,
                                 resolve_device)
from pybench.errors import UserError

from fakes import A100, A100_B, H100, H100_B, SLICE_1, SLICE_2, mig_a100, mixed, two_h100s


# --- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, entries", [
    (None, None),
    ("", []),
    ("-1", []),
    ("1", [1]),
    ("1,0", [1, 0]),
    (" 2 , 0 ", [2, 0]),
    ("0,2,-1,1", [0, 2]),
    ("x", []),
    ("1abc", [1]),
    (f"{H100},{SLICE_1}", [H100, SLICE_1]),
    ("GPU-1111", ["GPU-1111"]),
])
def test_visible_devices_parse_as_cuda_reads_them(value, entries):
    assert parse_visible_devices(value) == entries


def uuids(devices: list[dict]) -> list[str]:
    return [d["uuid"] for d in devices]


def test_indices_count_in_pci_order_not_nvml_order(nvml):
    nvml(two_h100s())
    found = gpus()
    assert [g["index"] for g in found] == [0, 1] and found[0]["uuid"] == H100_B
    assert uuids(cuda_devices(found, None, None)) == [H100, H100_B]
    assert uuids(cuda_devices(found, "1", None)) == [H100_B]
    assert uuids(cuda_devices(found, "1,0", "PCI_BUS_ID")) == [H100_B, H100]


@pytest.mark.parametrize("value, expected", [
    ("", []),
    ("-1", []),
    ("0,0", []),  # a repeated entry hides every GPU
    ("0,5,1", [H100]),  # an index past the last GPU ends the list
    (H100_B, [H100_B]),
    (H100_B.upper(), [H100_B]),
    ("GPU-2222", [H100_B]),  # a unique prefix
    ("GPU-,0", []),  # an ambiguous prefix ends the list
    (f"{H100_B},0", [H100_B, H100]),
])
def test_visible_entries(nvml, value, expected):
    nvml(two_h100s())
    assert uuids(cuda_devices(gpus(), value, None)) == expected


def test_mixed_models_need_a_known_order(nvml):
    nvml(mixed())
    with pytest.raises(UserError, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        cuda_devices(gpus(), None, None)  # fastest first: which one is device 0 only CUDA knows
    with pytest.raises(UserError, match="CUDA_DEVICE_ORDER"):
        cuda_devices(gpus(), "1", "FASTEST_FIRST")
    assert uuids(cuda_devices(gpus(), "1", "PCI_BUS_ID")) == [A100]
    assert uuids(cuda_devices(gpus(), f"{A100},{H100}", None)) == [A100, H100]  # UUIDs need no order


def test_mig_slices(nvml):
    nvml(mig_a100())
    found = gpus()
    assert found[0]["mig_mode"] and uuids(found[0]["mig"]) == [SLICE_1, SLICE_2]
    assert not found[1]["mig_mode"] and found[1]["mig"] == []
    # A GPU in MIG mode shows as its first slice; by MIG UUID any slice; one slice per process.
    assert uuids(cuda_devices(found, None, None)) == [SLICE_1, A100_B]
    assert uuids(cuda_devices(found, SLICE_2, None)) == [SLICE_2]
    assert uuids(cuda_devices(found, f"{SLICE_2},{SLICE_1},1", None)) == [SLICE_2, A100_B]
    slice_ = cuda_devices(found, SLICE_2, None)[0]
    assert slice_["is_mig"] and slice_["parent_uuid"] == A100


# --- resolve_device ---------------------------------------------------------------------------------


def test_cuda_index_under_visible_devices_is_the_pinned_gpu(nvml, monkeypatch):
    nvml(two_h100s())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the second GPU on the PCI bus
    dev = resolve_device("cuda:0")
    assert (dev.kind, dev.index, dev.uuid, dev.label) == ("cuda", 0, H100_B, "cuda:0")
    assert dev.visible_env == {"CUDA_VISIBLE_DEVICES": H100_B, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert resolve_device("cuda").uuid == H100_B


def test_index_beyond_the_visible_gpus(nvml, monkeypatch):
    nvml(two_h100s())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", H100)
    with pytest.raises(UserError, match=f"cuda:1 requested but only 1 GPU is visible "
                                        f"\\(CUDA_VISIBLE_DEVICES={H100}\\)"):
        resolve_device("cuda:1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(UserError, match="only 2 GPUs are visible$"):
        resolve_device("cuda:2")


def test_bad_device_strings(nvml):
    nvml(two_h100s())
    with pytest.raises(UserError, match="bad device index -1"):
        resolve_device("cuda:-1")
    for arg in ("gpu", "cuda:x", "cuda:", "cuda:0,1"):
        with pytest.raises(UserError, match="bad device"):
            resolve_device(arg)


def test_no_gpu(nvml, monkeypatch):
    nvml([], fail=("nvmlInit",))  # no driver
    assert resolve_device("auto") == Device("cpu")
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    nvml(two_h100s())
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert resolve_device("auto").kind == "cpu"
        with pytest.raises(UserError, match=f"no CUDA GPU is visible \\(CUDA_VISIBLE_DEVICES={hidden}\\)"):
            resolve_device("cuda:0")


def test_auto(nvml, monkeypatch):
    nvml(two_h100s())
    assert resolve_device("auto").uuid == H100
    assert resolve_device("cpu") == Device("cpu")
    monkeypatch.setattr(devices, "torch_cuda_version", lambda: None)  # CPU-only torch
    assert resolve_device("auto") == Device("cpu")


def test_mig_device_is_pinned_by_its_own_uuid(nvml, monkeypatch):
    nvml(mig_a100())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", SLICE_2)
    dev = resolve_device("cuda:0")
    assert dev.is_mig and dev.name.endswith("MIG 3g.20gb") and dev.parent_uuid == A100
    assert dev.visible_env["CUDA_VISIBLE_DEVICES"] == SLICE_2


def test_device_json_round_trip(nvml):
    nvml(mig_a100())
    for dev in (Device("cpu"), resolve_device("cuda:1"), resolve_device("cuda:0")):
        data = dev.to_json()
        assert Device.from_json(data) == dev
        assert data["label"] == dev.label and data["visible_env"] == dev.visible_env


def test_a_cuda_device_always_has_a_uuid():
    with pytest.raises(ValueError):
        Device("cuda", 0)
    with pytest.raises(ValueError):
        Device.from_json({"kind": "tpu"})


def test_torch_cuda_version_without_importing_torch(tmp_path, monkeypatch):
    import torch

    assert devices.torch_cuda_version() == torch.version.cuda
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "version.py").write_text("__version__ = '2.14.1+cpu'\ncuda: Optional[str] = None\n")
    monkeypatch.delitem(sys.modules, "torch")  # find_spec answers from sys.modules first
    monkeypatch.syspath_prepend(str(tmp_path))
    assert devices.torch_cuda_version() is None


# --- NVML facts, calls that fail --------------------------------------------------------------------


def test_facts_by_uuid(nvml):
    fake = nvml(two_h100s())
    facts = next(g for g in gpus() if g["uuid"] == H100)
    assert facts["name"] == "NVIDIA H100 80GB HBM3" and facts["memory_total"] == 80 << 30
    assert facts["driver"] == "570.86.15" and facts["pci_bus_id"] == "00000000:18:00.0"
    assert facts["mig_mode"] is False and facts["mig"] == []
    assert gpu_memory_used(H100) == 5 << 30 and gpu_memory_used(H100_B) == 1 << 30
    assert fake.open == 0  # every query shuts NVML down again


def test_each_refused_call_is_one_missing_fact(nvml):
    nvml(mig_a100(), fail=("nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetPowerManagementLimit",
                           "nvmlDeviceGetName"))
    facts = gpus()[0]["mig"][0]
    assert facts["uuid"] == SLICE_1 and facts["name"] is None
    assert facts["memory_total"] == 5 << 30 and facts["parent_uuid"] == A100
    assert [g["name"] for g in gpus()] == [None, None] and gpus()[0]["uuid"] == A100
    assert resolve_device("cuda:0").uuid == SLICE_1  # resolution needs UUIDs, not names


def test_refused_memory_query(nvml):
    nvml(two_h100s(), fail=("nvmlDeviceGetMemoryInfo",))
    assert gpu_memory_used(H100) is None
    assert gpus()[0]["memory_total"] is None and gpus()[0]["name"] is not None


@pytest.mark.parametrize("fail", ["nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex"])
def test_nvml_failing_early_means_no_gpu(nvml, fail):
    nvml(two_h100s(), fail=(fail,))
    assert gpus() == []
    assert resolve_device("auto") == Device("cpu")


def test_unknown_uuid_and_no_nvml(nvml):
    nvml(two_h100s())
    assert gpu_memory_used("GPU-nope") is None
    nvml(two_h100s(), fail=("nvmlInit",))
    assert gpu_memory_used(H100) is None
    assert capture("box", 1)["gpus"] == []


def test_capture_lists_gpus_by_uuid(nvml, monkeypatch):
    nvml(mig_a100())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", SLICE_1)
    env = capture("box", 2, tf32=True)
    assert [g["uuid"] for g in env["gpus"]] == [A100, A100_B]
    assert env["gpus"][0]["mig"][0]["uuid"] == SLICE_1
    assert env["cuda_visible_devices"] == SLICE_1 and env["threads"] == 2 and env["tf32"] is True


# --- the GPU a worker runs on -----------------------------------------------------------------------


def test_framework_uuid_maps_to_nvml(nvml):
    nvml(mig_a100())
    bare = H100_B[4:]
    assert nvml_uuid_forms(bare) == [H100_B, "MIG-" + bare]
    assert nvml_uuid_forms(bare.upper()) == [H100_B, "MIG-" + bare]
    assert nvml_uuid_forms(bare.replace("-", "")) == [H100_B, "MIG-" + bare]
    assert nvml_uuid_forms(H100_B.upper()) == [H100_B]
    assert nvml_uuid_forms(bytes.fromhex(bare.replace("-", ""))) == [H100_B, "MIG-" + bare]
    # torch prints get_device_properties(i).uuid bare, for a GPU and for a MIG slice alike
    assert gpu_identity("NVIDIA A100-SXM4-40GB", A100_B[4:])["uuid"] == A100_B
    ident = gpu_identity("NVIDIA A100-SXM4-40GB MIG 1g.5gb", SLICE_1[4:])
    assert ident == {"name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "uuid": SLICE_1,
                     "framework_uuid": SLICE_1[4:]}
    assert gpu_identity("?", "99999999-9999-9999-9999-999999999999")["uuid"] is None


def test_same_gpu(nvml, monkeypatch):
    nvml(mig_a100())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", SLICE_1)
    dev = resolve_device("cuda:0")
    assert dev.same_gpu(gpu_identity("x", SLICE_1[4:]))
    assert dev.same_gpu(gpu_identity("x", A100[4:]))  # a slice reported by its GPU's UUID
    assert not dev.same_gpu(gpu_identity("x", A100_B[4:]))
    assert not dev.same_gpu({"uuid": None})
    whole = Device("cuda", 1, A100_B, "NVIDIA A100-SXM4-40GB")
    assert whole.same_gpu({"uuid": A100_B}) and not whole.same_gpu({"uuid": A100})


# --- data-sheet peaks -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fp32, bf16", [
    ("NVIDIA H100 80GB HBM3", 67.0, 989.4),
    ("NVIDIA H100 NVL", 60.0, 835.5),
    ("NVIDIA H100 PCIe", 51.0, 756.5),
    ("NVIDIA H200", 67.0, 989.4),
    ("NVIDIA H200 NVL", 60.0, 835.5),
    ("NVIDIA A100-SXM4-80GB", 19.5, 312.0),
    ("NVIDIA A100-SXM4-40GB", 19.5, 312.0),
    ("NVIDIA A100 80GB PCIe", 19.5, 312.0),
    ("NVIDIA A100-PCIE-40GB", 19.5, 312.0),
    ("NVIDIA L4", 30.3, 121.0),
    ("NVIDIA L40", 90.5, 181.05),
    ("NVIDIA L40S", 91.6, 362.05),
    ("NVIDIA A10", 31.2, 125.0),
    ("NVIDIA GeForce RTX 4090", 82.6, 165.2),
    ("Tesla V100-SXM2-16GB", 15.7, 15.7),  # no BF16 on Volta: FP32 rate
    ("Tesla V100-SXM2-32GB", 15.7, 15.7),
    ("Tesla V100-PCIE-16GB", 14.0, 14.0),
    ("Tesla P100-PCIE-16GB", 9.3, 9.3),
    ("Tesla P100-SXM2-16GB", 10.6, 10.6),
    ("NVIDIA GeForce GTX 1080 Ti", 11.3, 11.3),
    ("GeForce GTX 1080 Ti", 11.3, 11.3),
    ("Tesla T4", 8.1, 8.1),
])
def test_peak_by_whole_name(name, fp32, bf16):
    assert gpu_peak_gflops(name, "fp32") == pytest.approx(fp32 * 1e3)
    assert gpu_peak_gflops(name, "bf16") == pytest.approx(bf16 * 1e3)


@pytest.mark.parametrize("name", [
    "NVIDIA RTX A1000",  # not an A100
    "NVIDIA A10G",  # not an A10
    "NVIDIA L40 MIG",
    "Tesla V100S-PCIE-32GB",
    "NVIDIA GeForce GTX 1080",  # not the Ti
    "NVIDIA GeForce RTX 4090 D",
    "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
    "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
    "Some Future GPU",
])
def test_no_peak_for_other_names_or_mig_slices(name):
    assert gpu_peak_gflops(name, "fp32") is None


def test_peaks_per_precision():
    assert gpu_peak_gflops("NVIDIA H100 80GB HBM3", "tf32") == pytest.approx(494_700)
    assert gpu_peak_gflops("NVIDIA H100 NVL", "tf32") == pytest.approx(417_500)
    assert gpu_peak_gflops("Tesla V100-SXM2-16GB", "fp16") == pytest.approx(125_000)
    assert gpu_peak_gflops("Tesla V100-SXM2-16GB", "tf32") == pytest.approx(15_700)  # no TF32 on Volta
    assert gpu_peak_gflops("Tesla T4", "fp16") == pytest.approx(65_000)
    assert gpu_peak_gflops("NVIDIA GeForce GTX 1080 Ti", "fp16") == pytest.approx(11_300)
