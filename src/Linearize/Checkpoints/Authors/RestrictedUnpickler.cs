using System.Buffers.Binary;
using System.Text;

namespace Linearize.Checkpoints.Authors;

/// <summary>
/// A pickle reader that runs no code: it understands the opcodes <c>torch.save</c> writes for tensors and plain
/// containers, and names exactly four kinds of callables — <c>collections.OrderedDict</c>,
/// <c>torch._utils._rebuild_tensor_v2</c>, <c>torch._utils._rebuild_parameter</c> and the <c>torch.*Storage</c>
/// types of persistent ids — which it interprets itself. Any other global (<c>builtins.eval</c>, <c>os.system</c>,
/// a class) is refused where it appears, so a hostile file can only fail to load. Every length and index is checked
/// against what is left of the input before it is used.
/// </summary>
internal sealed class RestrictedUnpickler
{
    private const int MaxStack = 1 << 20;
    private const int MaxMemo = 1 << 22;

    private static readonly Dictionary<string, TorchStorageType> StorageTypes = new()
    {
        ["FloatStorage"] = new(TorchSharp.torch.ScalarType.Float32, 4),
        ["DoubleStorage"] = new(TorchSharp.torch.ScalarType.Float64, 8),
        ["HalfStorage"] = new(TorchSharp.torch.ScalarType.Float16, 2),
        ["BFloat16Storage"] = new(TorchSharp.torch.ScalarType.BFloat16, 2),
        ["LongStorage"] = new(TorchSharp.torch.ScalarType.Int64, 8),
        ["IntStorage"] = new(TorchSharp.torch.ScalarType.Int32, 4),
        ["ShortStorage"] = new(TorchSharp.torch.ScalarType.Int16, 2),
        ["CharStorage"] = new(TorchSharp.torch.ScalarType.Int8, 1),
        ["ByteStorage"] = new(TorchSharp.torch.ScalarType.Byte, 1),
        ["BoolStorage"] = new(TorchSharp.torch.ScalarType.Bool, 1),
    };

    private readonly byte[] _data;
    private readonly string _where;
    private readonly List<object?> _stack = new();
    private readonly List<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = new();
    private int _pos;

    private RestrictedUnpickler(byte[] data, string where)
    {
        _data = data;
        _where = where;
    }

    internal sealed record Global(string Module, string Name);

    internal sealed record TorchStorageType(TorchSharp.torch.ScalarType DType, int ElementSize);

    internal sealed record StorageRef(string Key, TorchStorageType Type, long Numel);

    internal sealed record TensorRecord(StorageRef Storage, long Offset, long[] Size, long[] Stride);

    /// <summary>Reads one pickle: dicts are <see cref="Dictionary{TKey,TValue}"/> (insertion order kept), lists
    /// <see cref="List{T}"/>, tuples <c>object?[]</c>, tensors <see cref="TensorRecord"/>; strings, longs, doubles,
    /// bools and null as themselves. <paramref name="where"/> prefixes every error.</summary>
    public static object? Read(byte[] data, string where) => new RestrictedUnpickler(data, where).Run();

    private LinearizeException Fail(string problem) => new($"{_where}: {problem} (at byte {_pos})");

    private object? Run()
    {
        while (true)
        {
            if (_pos >= _data.Length)
                throw Fail("ends before the pickle's STOP opcode (truncated)");
            byte op = _data[_pos++];
            switch (op)
            {
                case 0x80: Take(1); break;                              // PROTO
                case 0x95: Take(8); break;                              // FRAME: a length hint only
                case (byte)'.':                                          // STOP
                    if (_stack.Count != 1 || _marks.Count != 0)
                        throw Fail($"STOP with {_stack.Count} values on the stack");
                    return Check(_stack[0]);
                case (byte)'(': _marks.Add(_stack.Count); break;        // MARK
                case (byte)'}': Push(new Dictionary<object, object?>()); break;
                case (byte)']': Push(new List<object?>()); break;
                case (byte)')': Push(Array.Empty<object?>()); break;
                case (byte)'t': Push(PopToMark().ToArray()); break;
                case 0x85: Push(new[] { Pop() }); break;
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; }
                case (byte)'X': Push(Utf8(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;
                case 0x8c: Push(Utf8(Take(1)[0])); break;
                case 0x8d: Push(Utf8(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)))); break;
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
                case (byte)'K': Push((long)Take(1)[0]); break;
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
                case 0x8a: Push(Long1()); break;
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'N': Push(null); break;
                case (byte)'q': Memo(Take(1)[0]); break;
                case (byte)'r': Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))); break;
                case 0x94: Memo(_memo.Count); break;
                case (byte)'h': Push(Recall(Take(1)[0])); break;
                case (byte)'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;
                case (byte)'0': Pop(); break;
                case (byte)'s': { var v = Pop(); var k = Pop(); SetItem(Top(), k, v); break; }
                case (byte)'u':
                {
                    var items = PopToMark();
                    if (items.Count % 2 != 0)
                        throw Fail("SETITEMS with an odd number of values");
                    var dict = Top();
                    for (int i = 0; i < items.Count; i += 2)
                        SetItem(dict, items[i], items[i + 1]);
                    break;
                }
                case (byte)'a': { var v = Pop(); ListOf(Top()).Add(v); break; }
                case (byte)'e': { var items = PopToMark(); ListOf(Top()).AddRange(items); break; }
                case (byte)'c': Push(Allow(Line(), Line())); break;     // GLOBAL
                case 0x93:                                               // STACK_GLOBAL
                {
                    var name = Pop() as string ?? throw Fail("STACK_GLOBAL needs two strings");
                    var module = Pop() as string ?? throw Fail("STACK_GLOBAL needs two strings");
                    Push(Allow(module, name));
                    break;
                }
                case (byte)'R': { var args = Pop(); var fn = Pop(); Push(Reduce(fn, args)); break; }
                case (byte)'Q': Push(PersistentLoad(Pop())); break;     // BINPERSID
                case (byte)'b':                                          // BUILD: an OrderedDict's attributes (torch's _metadata)
                {
                    var state = Pop();
                    if (Top() is not Dictionary<object, object?> || state is not (null or Dictionary<object, object?>))
                        throw Fail("BUILD sets attributes on an object; only a dict's metadata is accepted");
                    break;
                }
                default:
                    throw Fail($"unsupported pickle opcode 0x{op:x2}");
            }
        }
    }

    /// <summary>Refuses, where it appears, any global that is not a tensor, a storage type or an OrderedDict.</summary>
    private Global Allow(string module, string name)
    {
        bool ok = (module, name) switch
        {
            ("collections", "OrderedDict") => true,
            ("torch._utils", "_rebuild_tensor_v2" or "_rebuild_parameter") => true,
            ("torch", _) => StorageTypes.ContainsKey(name),
            _ => false,
        };
        return ok ? new Global(module, name)
            : throw Fail($"references {module}.{name}, which is neither a tensor nor a plain container; refused (pickled code is never run)");
    }

    private object? Reduce(object? fn, object? args)
    {
        if (fn is not Global g)
            throw Fail("REDUCE on something that is not a callable");
        var a = args as object?[] ?? throw Fail($"REDUCE of {g.Module}.{g.Name} without an argument tuple");
        switch (g.Name)
        {
            case "OrderedDict":
                if (a.Length != 0)
                    throw Fail("OrderedDict(...) with arguments");
                return new Dictionary<object, object?>();
            case "_rebuild_tensor_v2":
            {
                if (a.Length is not (6 or 7))
                    throw Fail($"_rebuild_tensor_v2 with {a.Length} arguments (expected 6 or 7)");
                var storage = a[0] as StorageRef ?? throw Fail("_rebuild_tensor_v2: the first argument is not a storage");
                long offset = a[1] as long? ?? throw Fail("_rebuild_tensor_v2: storage_offset is not an integer");
                var size = Longs(a[2], "size");
                var stride = Longs(a[3], "stride");
                if (a[4] is not bool)
                    throw Fail("_rebuild_tensor_v2: requires_grad is not a bool");
                if (a[5] is not (null or Dictionary<object, object?> { Count: 0 }))
                    throw Fail("_rebuild_tensor_v2: backward hooks are code; refused");
                if (size.Length != stride.Length)
                    throw Fail($"_rebuild_tensor_v2: size has {size.Length} dimensions, stride {stride.Length}");
                if (offset < 0 || size.Any(s => s < 0) || stride.Any(s => s < 0))
                    throw Fail("_rebuild_tensor_v2: negative offset, size or stride");
                // The last element the view touches must lie inside the storage.
                if (!size.Contains(0))
                {
                    long last = offset;
                    try
                    {
                        checked
                        {
                            for (int i = 0; i < size.Length; i++)
                                last += (size[i] - 1) * stride[i];
                        }
                    }
                    catch (OverflowException)
                    {
                        throw Fail("_rebuild_tensor_v2: size × stride overflows");
                    }

                    if (last >= storage.Numel)
                        throw Fail($"_rebuild_tensor_v2: a view reaching element {last} of a storage of {storage.Numel}");
                }

                // A stride-0 view may repeat its storage, but not into an allocation no checkpoint needs.
                double elements = size.Aggregate(1.0, (p, s) => p * s);
                if (elements > Math.Min(1L << 34, (storage.Numel + 1) * 1024.0))
                    throw Fail($"_rebuild_tensor_v2: a view of {elements} elements over a storage of {storage.Numel}");

                return new TensorRecord(storage, offset, size, stride);
            }
            case "_rebuild_parameter":
                if (a.Length != 3 || a[0] is not TensorRecord t || a[1] is not bool)
                    throw Fail("_rebuild_parameter expects (tensor, requires_grad, hooks)");
                if (a[2] is not (null or Dictionary<object, object?> { Count: 0 }))
                    throw Fail("_rebuild_parameter: backward hooks are code; refused");
                return t;
            default:
                throw Fail($"{g.Module}.{g.Name}(...) is not a call a tensor checkpoint makes; refused");
        }
    }

    private StorageRef PersistentLoad(object? pid)
    {
        if (pid is not object?[] { Length: 5 } t || t[0] as string != "storage")
            throw Fail("a persistent id that is not ('storage', type, key, location, numel)");
        if (t[1] is not Global { Module: "torch" } g || !StorageTypes.TryGetValue(g.Name, out var type))
            throw Fail("a storage of unknown type");
        var key = t[2] as string ?? throw Fail("a storage key that is not a string");
        if (key.Length == 0 || key.Contains('/') || key.Contains('\\') || key.Contains(".."))
            throw Fail($"a storage key '{key}' that is not a file name");
        if (t[3] is not string)
            throw Fail("a storage location that is not a string");
        long numel = t[4] as long? ?? throw Fail("a storage size that is not an integer");
        if (numel < 0)
            throw Fail($"a storage of {numel} elements");
        return new StorageRef(key, type, numel);
    }

    private long[] Longs(object? value, string what)
    {
        if (value is not object?[] items)
            throw Fail($"_rebuild_tensor_v2: {what} is not a tuple");
        var result = new long[items.Length];
        for (int i = 0; i < items.Length; i++)
            result[i] = items[i] as long? ?? throw Fail($"_rebuild_tensor_v2: {what}[{i}] is not an integer");
        return result;
    }

    private void SetItem(object? target, object? key, object? value)
    {
        if (target is not Dictionary<object, object?> dict)
            throw Fail("SETITEM on something that is not a dict");
        if (key is not (string or long or bool or double))
            throw Fail("a dict key that is not a string or a number");
        dict[key] = value;
    }

    private List<object?> ListOf(object? target) => target as List<object?> ?? throw Fail("APPEND on something that is not a list");

    /// <summary>Only values a checkpoint may hold reach the caller; globals and storages are not among them.</summary>
    private object? Check(object? value) => value is Global or StorageRef
        ? throw Fail("the pickle's value is a callable or a bare storage, not a checkpoint")
        : value;

    private ReadOnlySpan<byte> Take(long n)
    {
        if (n < 0 || n > _data.Length - _pos)
            throw Fail($"needs {n} bytes but {_data.Length - _pos} remain (truncated or corrupt)");
        var span = new ReadOnlySpan<byte>(_data, _pos, (int)n);
        _pos += (int)n;
        return span;
    }

    private string Utf8(ulong length)
    {
        if (length > (ulong)(_data.Length - _pos))
            throw Fail($"a string of {length} bytes but {_data.Length - _pos} remain");
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(Take((long)length));
        }
        catch (DecoderFallbackException)
        {
            throw Fail("a string that is not valid UTF-8");
        }
    }

    private string Line()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos);
        if (end < 0 || end - _pos > 256)
            throw Fail("a GLOBAL name without its newline");
        var text = Encoding.ASCII.GetString(_data, _pos, end - _pos);
        _pos = end + 1;
        return text;
    }

    private long Long1()
    {
        int n = Take(1)[0];
        if (n > 8)
            throw Fail($"an integer of {n} bytes (at most 8 are read)");
        var bytes = Take(n);
        long value = 0;
        for (int i = n - 1; i >= 0; i--)
            value = (value << 8) | bytes[i];
        if (n is > 0 and < 8 && (bytes[n - 1] & 0x80) != 0)
            value -= 1L << (8 * n); // two's complement of n bytes
        return value;
    }

    private void Push(object? value)
    {
        if (_stack.Count >= MaxStack)
            throw Fail("a stack deeper than any checkpoint needs");
        _stack.Add(value);
    }

    private object? Pop()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _marks[^1] == _stack.Count))
            throw Fail("pops an empty stack");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    private object? Top() => _stack.Count == 0 || (_marks.Count > 0 && _marks[^1] == _stack.Count)
        ? throw Fail("reads an empty stack")
        : _stack[^1];

    private List<object?> PopToMark()
    {
        if (_marks.Count == 0)
            throw Fail("no MARK to pop to");
        int at = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(at, _stack.Count - at);
        _stack.RemoveRange(at, _stack.Count - at);
        return items;
    }

    private void Memo(long index)
    {
        if (_memo.Count >= MaxMemo)
            throw Fail("more memo entries than any checkpoint needs");
        _memo[index] = Top();
    }

    private object? Recall(long index) =>
        _memo.TryGetValue(index, out var v) ? v : throw Fail($"recalls memo {index}, which was never stored");
}
