#!/usr/bin/env python3
"""Writes the .pt fixtures beside this script with the Python standard library only (PyTorch is not needed).

torch.save (PyTorch >= 1.6) writes a zip archive: <root>/data.pkl (a protocol-2 pickle whose tensors are
torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict()) and whose storages are
persistent ids ('storage', torch.<Type>Storage, key, location, numel)), <root>/data/<key> (each storage's raw
little-endian bytes), <root>/byteorder ('little') and <root>/version. Stand-in modules named torch and torch._utils
make pickle emit exactly those GLOBAL opcodes. Run: python3 make_pt_fixtures.py (deterministic output).
"""
import collections
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
    raise AssertionError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

STORAGE_TYPES = {}
for name in ["FloatStorage", "BFloat16Storage", "HalfStorage", "DoubleStorage", "LongStorage", "IntStorage", "BoolStorage"]:
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)
    STORAGE_TYPES[name] = cls


class Storage:
    def __init__(self, key, type_name, raw, numel):
        self.key, self.type_name, self.raw, self.numel = key, type_name, raw, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (_rebuild_tensor_v2,
                (self.storage, self.offset, tuple(self.size), tuple(self.stride), False, collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_TYPES[obj.type_name], obj.key, "cpu", obj.numel)
        return None


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def bf16(values):  # bfloat16 = the upper half of float32 (these values are exact)
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def i64(values):
    return struct.pack("<%dq" % len(values), *values)


def save(path, obj, storages, root="archive"):
    buf = __import__("io").BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        def add(name, data):
            info = zipfile.ZipInfo(f"{root}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)
        add("data.pkl", buf.getvalue())
        add("byteorder", b"little")
        for s in storages:
            add(f"data/{s.key}", s.raw)
        add("version", b"3\n")


# 1. A checkpoint as the LoLCATs trainer saves it, with every plain container and dtype the reader accepts.
shared = Storage("0", "FloatStorage", f32([float(i) for i in range(12)]), 12)   # 0, 1, …, 11
half = Storage("1", "BFloat16Storage", bf16([0.5, -1.0, 2.0, 3.5]), 4)
longs = Storage("2", "LongStorage", i64([1, 2, 3, 4]), 4)
state = collections.OrderedDict()
state["layers.0.weight"] = Tensor(shared, 0, [3, 4], [4, 1])        # [[0..3], [4..7], [8..11]]
state["layers.0.transposed"] = Tensor(shared, 0, [4, 3], [1, 4])    # its transpose, same storage
state["layers.0.tail"] = Tensor(shared, 8, [4], [1])                # 8, 9, 10, 11: an offset view
state["layers.1.bf16"] = Tensor(half, 0, [4], [1])
state["layers.1.long"] = Tensor(longs, 0, [2, 2], [2, 1])
state["scalar"] = Tensor(shared, 5, [], [])                          # 5.0, zero-dimensional
checkpoint = {
    "model_state_dict": state,
    "step": 7,
    "eval/loss": 1.25,
    "plain": [True, False, None, "text", -3, 2 ** 40, (1, 2.5)],
}
save(os.path.join(HERE, "plain.pt"), checkpoint, [shared, half, longs])


# 2. Pickled calls the reader must refuse, each in an otherwise valid archive.
class Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


save(os.path.join(HERE, "eval.pt"), {"model_state_dict": Call(eval, ("1 + 1",))}, [])
save(os.path.join(HERE, "system.pt"), {"x": Call(os.system, ("echo pwned",))}, [])
