using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.Inference;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Methods;

/// <summary>
/// Writes a Hugging Face directory as a q8 engine checkpoint (<see cref="Q8Checkpoint"/>): every matrix the engine
/// packs is quantized by the engine's own packing (<see cref="PackedMatrix"/>, so the rows are bit for bit what
/// <c>--weight-dtype q8</c> would build at load) and stored as those rows; every other tensor is copied.
/// The source is never loaded as a model: one matrix at a time, read from the mapped file a block of rows at a time.
/// Files keep their names (a sharded source stays sharded, with a new index).
/// </summary>
public static class EngineQuantizer
{
    public static QuantizationResult Quantize(string modelDirectory, string outDir, string? tokenizerPath)
    {
        var config = LlamaConfig.Load(Path.Combine(modelDirectory, "config.json"));
        if (Q8Checkpoint.IsQuantized(config))
            throw new LinearizeException($"{modelDirectory}: already a q8 engine checkpoint");
        using var checkpoint = SafetensorsCheckpoint.Open(modelDirectory);
        if (checkpoint.Names.FirstOrDefault(n => n.Contains("lora_", StringComparison.Ordinal)) is { } lora)
            throw new LinearizeException($"{modelDirectory}: holds unmerged LoRA adapters ({lora}): merge them first with 'linearize merge'");

        int matrices = 0;
        long before = 0, after = 0;
        StagedDirectory.Write(outDir, staging =>
        {
            var weightMap = new JsonObject();
            foreach (var file in checkpoint.Files)
            {
                string name = Path.GetFileName(file.FilePath);
                var entries = new List<SafetensorsEntry>();
                foreach (var t in file.Tensors.Values)
                {
                    before += t.ByteCount;
                    if (!Q8Checkpoint.IsEngineMatrix(t.Name) || t.Shape.Length != 2)
                    {
                        entries.Add(new SafetensorsEntry(t.Name, t.DType.ToScalarType(), t.Shape, () => file.Read(t.Name), Owned: true));
                        weightMap[t.Name] = name;
                        after += t.ByteCount;
                        continue;
                    }

                    var shape = new[] { t.Shape[0], new Q8RowLayout(checked((int)t.Shape[1])).RowBytes };
                    string rows = Q8Checkpoint.RowsName(t.Name);
                    // Packed when the writer asks for it and freed once copied: one matrix in memory at a time.
                    entries.Add(new SafetensorsEntry(rows, ScalarType.Byte, shape, () =>
                    {
                        using var m = Packed(checkpoint, t.Name);
                        return Copy(m.Q8Rows(), shape, ScalarType.Byte);
                    }, Owned: true));
                    weightMap[rows] = name;
                    after += shape[0] * shape[1];
                    matrices++;
                }

                SafetensorsWriter.Write(Path.Combine(staging, name), entries);
            }

            if (checkpoint.Files.Count > 1)
                SafetensorsWriter.WriteIndex(staging, weightMap, after);
            config.With(j => j["quantization_config"] = Q8Checkpoint.QuantizationConfig()).Save(Path.Combine(staging, "config.json"));
            ModelLoader.CopyTokenizer(tokenizerPath, staging);
        });
        return new QuantizationResult(matrices, before, after);
    }

    /// <summary>Matrix <paramref name="name"/> packed as Q8, a block of rows at a time.</summary>
    private static PackedMatrix Packed(SafetensorsCheckpoint checkpoint, string name)
    {
        var shape = checkpoint.GetInfo(name).Shape;
        int rows = (int)shape[0], cols = (int)shape[1];
        var matrix = PackedMatrix.Allocate(rows, cols, WeightFormat.Q8);
        try
        {
            int blockRows = (int)Math.Max(1, EngineWeightPacking.StagingFloats / cols);
            var staging = GC.AllocateUninitializedArray<float>(blockRows * cols);
            for (int r = 0; r < rows; r += blockRows)
            {
                int count = Math.Min(blockRows, rows - r);
                var block = staging.AsSpan(0, count * cols);
                checkpoint.ReadInto(name, (long)r * cols, block);
                matrix.PackRows(r, block);
            }
        }
        catch
        {
            matrix.Dispose();
            throw;
        }

        return matrix;
    }

    private static Tensor Copy<T>(ReadOnlySpan<T> values, long[] shape, ScalarType type) where T : unmanaged
    {
        var t = empty(shape, type);
        values.CopyTo(MemoryMarshal.Cast<byte, T>(t.bytes));
        return t;
    }
}
