using System.Text.Json;
using System.Text.Json.Nodes;
using Linearize.Checkpoints;
using Linearize.Checkpoints.Configuration;
using Linearize.LinearAttention.Layers;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Methods;

/// <summary>
/// Converts a Hugging Face teacher directory without loading the teacher: the converted model is the teacher's
/// weights under the same names plus the few parameters some methods add, so each teacher weight file is hard-linked
/// when its element type is the one asked for (otherwise rewritten one tensor at a time), the added parameters are
/// built one layer at a time and written to <see cref="AddedFileName"/>, and an index maps every tensor to its file.
/// Memory is one tensor (or one layer's added parameters), not the model; the result loads exactly as the model
/// <see cref="Converter.Convert"/> builds in memory.
/// </summary>
public static class StreamingConverter
{
    /// <summary>The file holding the parameters conversion adds.</summary>
    public const string AddedFileName = "model-linearization.safetensors";

    public static ConversionResult Convert(string teacherDirectory, LinearizationConfig linearization, ScalarType dtype, string outDir,
        string? tokenizerPath)
    {
        var teacherConfig = LlamaConfig.Load(Path.Combine(teacherDirectory, "config.json"));
        Inference.Q8Checkpoint.Refuse(teacherConfig, teacherDirectory, "conversion");
        var config = Converter.ConvertedConfig(teacherConfig, linearization)
            .With(j => j["torch_dtype"] = dtype == ScalarType.BFloat16 ? "bfloat16" : "float32");
        using var teacher = SafetensorsCheckpoint.Open(teacherDirectory);
        CheckTeacherTensors(teacher, teacherConfig);

        var (added, mixers) = AddedParameters(config, linearization, dtype, teacher);
        int linked = 0, copied = 0;
        try
        {
            StagedDirectory.Write(outDir, staging =>
            {
                var weightMap = new JsonObject();
                long total = 0;
                var targetType = SafetensorsDTypes.FromScalarType(dtype);
                foreach (var file in teacher.Files)
                {
                    string name = Path.GetFileName(file.FilePath);
                    string target = Path.Combine(staging, name);
                    if (file.Tensors.Values.All(t => t.DType == targetType) && HardLink.TryCreate(file.FilePath, target))
                        linked++;
                    else
                    {
                        SafetensorsWriter.Write(target, file.Tensors.Values.Select(t => new SafetensorsEntry(t.Name, dtype, t.Shape, () =>
                        {
                            var stored = file.Read(t.Name);
                            if (stored.dtype == dtype)
                                return stored;
                            using (stored)
                                return stored.to(dtype);
                        }, Owned: true)).ToList());
                        copied++;
                    }

                    foreach (var t in file.Tensors.Values)
                    {
                        weightMap[t.Name] = name;
                        total += t.ElementCount * targetType.ElementSize();
                    }
                }

                if (added.Count > 0)
                {
                    SafetensorsWriter.Write(Path.Combine(staging, AddedFileName), added.Select(kv => SafetensorsEntry.Of(kv.Key, kv.Value)).ToList());
                    foreach (var (name, t) in added)
                    {
                        weightMap[name] = AddedFileName;
                        total += t.numel() * targetType.ElementSize();
                    }
                }

                // One teacher file and nothing added stays a single model.safetensors; anything else needs the index.
                if (teacher.Files.Count > 1 || added.Count > 0)
                    SafetensorsWriter.WriteIndex(staging, weightMap, total);
                config.Save(Path.Combine(staging, "config.json"));
                ModelLoader.CopyTokenizer(tokenizerPath, staging);
            });
        }
        finally
        {
            foreach (var t in added.Values)
                t.Dispose();
        }

        return new ConversionResult(mixers, linked, copied, added.Count);
    }

    /// <summary>A teacher tensor in <paramref name="dtype"/>.</summary>
    private static Tensor ReadAs(SafetensorsCheckpoint teacher, string name, ScalarType dtype)
    {
        var stored = teacher.Read(name);
        if (stored.dtype == dtype)
            return stored;
        using (stored)
            return stored.to(dtype);
    }

    /// <summary>The teacher must hold exactly a teacher's parameters, as the in-memory conversion's strict load demands.</summary>
    private static void CheckTeacherTensors(SafetensorsCheckpoint teacher, LlamaConfig config)
    {
        var expected = LlamaTensorLayout.For(config).ToDictionary(x => x.Name, x => x.Shape, StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            if (!teacher.Contains(name))
                throw new LinearizeException($"{teacher.Source}: missing tensor {name}");
            var info = teacher.GetInfo(name);
            if (!info.Shape.SequenceEqual(shape))
                throw new LinearizeException($"{teacher.Source}: {name} has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", shape)}]");
        }

        foreach (var name in teacher.Names)
            if (!expected.ContainsKey(name))
                throw new LinearizeException($"{teacher.Source}: unexpected tensor {name} (not a parameter of a {config.ModelType} teacher)");
    }

    /// <summary>Builds each layer's mixer alone (so memory is one layer) and keeps the parameters the method adds, under
    /// their model names; also describes the mixers as the loaded model will.</summary>
    private static (Dictionary<string, Tensor> Added, IReadOnlyList<string> Mixers) AddedParameters(LlamaConfig config,
        LinearizationConfig linearization, ScalarType dtype, SafetensorsCheckpoint teacher)
    {
        var added = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var described = new string[config.NumHiddenLayers];
        string? softmaxDescription = null, linearDescription = null;
        bool adds = true;
        using var noGrad = no_grad();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            bool softmax = linearization.IsSoftmaxLayer(i);
            // Layers of one kind describe alike; one whose kind adds nothing is built only to be described, once.
            if ((softmax ? softmaxDescription : adds ? null : linearDescription) is string known)
            {
                described[i] = known;
                continue;
            }

            using var layer = MixerRegistry.CreateLayer(config, i, linearization);
            described[i] = layer.Describe();
            if (softmax)
            {
                softmaxDescription = described[i];
                continue;
            }

            linearDescription = described[i];
            if (layer is LigerAttention { Options.HasLearnedGate: true } liger)
            {
                // As Converter.Convert: the learned gate starts from this layer's k_proj as the converted model stores it
                // (in the element type asked for; docs/METHODS.md §1.8).
                string k = $"model.layers.{i}.self_attn.k_proj.";
                using var keyWeight = ReadAs(teacher, k + "weight", dtype);
                using var keyBias = teacher.Contains(k + "bias") ? ReadAs(teacher, k + "bias", dtype) : null;
                liger.InitializeGateFromKeys(keyWeight, keyBias);
            }

            int before = added.Count;
            foreach (var (name, t) in layer.state_dict())
            {
                string full = $"model.layers.{i}.self_attn.{name}";
                if (Converter.IsAddedParameter(full))
                    added[full] = t.to(dtype, copy: true);
            }

            adds = added.Count > before;
        }

        return (added, TokenMixer.Summarize(described));
    }
}
