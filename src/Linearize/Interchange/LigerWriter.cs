using System.Text.Json;
using Linearize.Checkpoints.Configuration;
using Linearize.Checkpoints;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using TorchSharp;

namespace Linearize.Interchange;

/// <summary>
/// Writes a Liger model converted here as the directory the authors' <c>from_pretrained</c> reads: their
/// <c>config.json</c> (<see cref="LigerFormat.ToAuthors"/>) and the weights under the teacher's names, which are
/// already ours — the layer adds no tensors.
/// </summary>
public static class LigerWriter
{
    public static void Write(LlamaForCausalLM model, string directory, string? tokenizerPath)
    {
        var config = LigerFormat.ToAuthors(model.Config);
        config["torch_dtype"] = model.DType == torch.ScalarType.BFloat16 ? "bfloat16" : model.DType == torch.ScalarType.Float16 ? "float16" : "float32";
        StagedDirectory.Write(directory, staging =>
        {
            var tensors = model.state_dict().Select(kv => new KeyValuePair<string, torch.Tensor>(kv.Key, kv.Value)).ToList();
            SafetensorsWriter.WriteCheckpoint(staging, tensors);
            AtomicFile.WriteAllText(Path.Combine(staging, "config.json"),
                config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            ModelLoader.CopyTokenizer(tokenizerPath, staging);
        });
    }
}
