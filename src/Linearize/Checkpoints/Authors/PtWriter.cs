using System.IO.Compression;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Checkpoints.Authors;

/// <summary>
/// Writes named tensors as <c>torch.save({'model_state_dict': OrderedDict(...)})</c> does — the zip layout and the
/// protocol-2 pickle opcodes of PyTorch ≥ 1.6 — which is how the LoLCATs trainer saves its checkpoints and what its
/// loaders read. One storage per tensor, contiguous, little-endian; written to a temporary name and renamed.
/// </summary>
public static class PtWriter
{
    public static void Write(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors)
    {
        var pickle = new MemoryStream();
        var p = new BinaryWriter(pickle);
        void Op(byte b) => p.Write(b);
        void Str(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            Op((byte)'X');
            p.Write((uint)bytes.Length);
            p.Write(bytes);
        }

        void Int(long v)
        {
            if (v is >= int.MinValue and <= int.MaxValue)
            {
                Op((byte)'J');
                p.Write((int)v);
            }
            else
            {
                Op(0x8a);
                Op(8);
                p.Write(v);
            }
        }

        void Global(string module, string name)
        {
            Op((byte)'c');
            p.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));
        }

        void Longs(long[] values)
        {
            Op((byte)'(');
            foreach (var v in values)
                Int(v);
            Op((byte)'t');
        }

        Op(0x80); Op(2);                                     // PROTO 2
        Op((byte)'}'); Op((byte)'(');                        // {  'model_state_dict': OrderedDict(...)
        Str("model_state_dict");
        Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
        Op((byte)'(');
        var storages = new List<byte[]>();
        foreach (var (name, tensor) in tensors)
        {
            string storageType = tensor.dtype switch
            {
                ScalarType.Float32 => "FloatStorage",
                ScalarType.BFloat16 => "BFloat16Storage",
                ScalarType.Float16 => "HalfStorage",
                _ => throw new LinearizeException($"{path}: tensor '{name}' has dtype {tensor.dtype}; only float32, bfloat16 and float16 are written"),
            };
            using var c = tensor.detach().cpu().contiguous();
            storages.Add(c.bytes.ToArray());
            Str(name);
            Global("torch._utils", "_rebuild_tensor_v2");
            Op((byte)'(');
            Op((byte)'('); Str("storage"); Global("torch", storageType); Str((storages.Count - 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
            Str("cpu"); Int(c.numel()); Op((byte)'t'); Op((byte)'Q');
            Int(0);
            Longs(c.shape);
            Longs(c.stride());
            Op(0x89);                                        // requires_grad False
            Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
            Op((byte)'t'); Op((byte)'R');
        }

        Op((byte)'u');                                       // the OrderedDict's items
        Op((byte)'u');                                       // the outer dict's item
        Op((byte)'.');
        p.Flush();

        AtomicFile.Write(path, stream =>
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
            void Entry(string name, byte[] data)
            {
                var e = zip.CreateEntry("archive/" + name, CompressionLevel.NoCompression);
                e.LastWriteTime = new DateTimeOffset(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);
                using var s = e.Open();
                s.Write(data);
            }

            Entry("data.pkl", pickle.ToArray());
            Entry("byteorder", "little"u8.ToArray());
            for (int i = 0; i < storages.Count; i++)
                Entry($"data/{i}", storages[i]);
            Entry("version", "3\n"u8.ToArray());
        });
    }
}
