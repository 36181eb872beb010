using Linearize.Checkpoints.Authors;
using Linearize.Checkpoints.Configuration;
using Linearize.Interchange;
using Linearize.LinearAttention;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Modeling.Llama;
using Linearize.Tensors;
using Linearize.Tests.Cli;
using Linearize.Tests.Fixtures;
using Linearize.Training.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.Checkpoints;

/// <summary>
/// The LoLCATs authors' checkpoints — base model, attention-transfer <c>.pt</c>, LoRA <c>.pt</c>, YAML configs — import
/// as the model converting, distilling and training here gives with the same weights, and <c>export --format
/// lolcats</c> then <c>import-lolcats</c> is the identity.
/// </summary>
[Collection("Torch")]
public sealed class LolcatsFormatTests
{
    /// <summary>Their model config (<c>configs/model/distill_llama3_8b_lk_smd_wtk64_fd64_w01.yaml</c>) at a tiny size.</summary>
    private const string ModelYaml = """
        name: llama
        model:
          pretrained_model_name_or_path: "meta-llama/Meta-Llama-3-8B"
          torch_dtype: bfloat16
          attn_implementation: flash_attention_2
          rope_theta: 500000.0

        attention:
          attention_type: lolcats_llama_window_tk
          state_chunk_len: 1024
          window_size: 4
          affine_attention_factors: false
          init_window_factor: -2.1972245773362196
          feature_map: softmax_dim
          feature_map_kwargs:
            eps: 1e-12
            # mlp: null  # to set
            fullspace: true
          layer_idx: null # to set
          learned_kernel: untied_head_einsum
          learned_kernel_kwargs:
            feature_dim: 4
            skip_connection: false
            bias: false
            zero_init: false
          tie_qk_kernels: false
          train_qk: false
        """;

    /// <summary>Their experiment config's <c>finetune</c> section (<c>finetune_lora_qkvo_alpaca_clean.yaml</c>).</summary>
    private const string FinetuneYaml = """
        finetune:
          method: lora
          kwargs:
            r: 2
            lora_alpha: 4
            lora_dropout: 0 # 0.05
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"]
        """;

    private static LinearizationConfig Layer => new()
    {
        Method = LinearizationMethods.LolcatsTk,
        Lolcats = new LolcatsOptions { Shape = LolcatsWindowShape.Tk, Window = 4, FeatureDim = 4 },
    };

    private static Tensor Ids(int vocab) => randint(0, vocab, new long[] { 2, 40 }, dtype: ScalarType.Int64, generator: new torch.Generator(9));

    /// <summary>Writes the authors' four parts for a tiny teacher and returns what converting, "distilling" (feature maps
    /// and window factors set to seeded values) and "training" (seeded LoRA, merged) here gives.</summary>
    private static (LlamaForCausalLM Expected, string Base, string Attn, string Peft, string ModelCfg, string FinetuneCfg) AuthorsCheckpoints(TempDir dir)
    {
        using var teacher = TinyModels.Create("gqa-untied");
        string baseDir = dir.File("base");
        ModelLoader.SaveHuggingFace(teacher, teacher.Config, baseDir, null);
        var student = Converter.Convert(teacher, Layer);
        var gen = new torch.Generator(21);
        using (no_grad())
        {
            foreach (var (name, t) in student.state_dict().Where(kv => Converter.IsAddedParameter(kv.Key)))
            {
                using var r = randn(t.shape, generator: gen);
                t.copy_(r);
            }
        }

        string attn = dir.File("distill.pt");
        PtWriter.Write(attn, student.state_dict().Where(kv => Converter.IsAddedParameter(kv.Key))
            .Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value)).ToList());

        LoraInjector.Inject(student, new LoraOptions { Rank = 2, Alpha = 4, Targets = new[] { "q_proj", "k_proj", "v_proj", "o_proj" } }, seed: 5);
        var adapters = LoraInjector.AdapterTensors(student);
        using (no_grad())
        {
            foreach (var (name, t) in adapters.Where(kv => kv.Key.Contains(".lora_B.")))
            {
                using var r = randn(t.shape, generator: gen);
                t.copy_(r.Times(0.1));
            }
        }

        // PEFT's names inside their PeftModel: base_model.model.<path>.lora_A.default.weight
        string peft = dir.File("finetune.pt");
        PtWriter.Write(peft, adapters.Select(kv => new KeyValuePair<string, Tensor>(
            "base_model.model." + kv.Key.Replace(".lora_A.", ".lora_A.default.").Replace(".lora_B.", ".lora_B.default."), kv.Value)).ToList());
        LoraInjector.Merge(student);
        student.eval();

        File.WriteAllText(dir.File("model.yaml"), ModelYaml);
        File.WriteAllText(dir.File("finetune.yaml"), FinetuneYaml);
        return (student, baseDir, attn, peft, dir.File("model.yaml"), dir.File("finetune.yaml"));
    }

    [Fact]
    public void ImportEqualsConvertingDistillingAndTrainingHereAndExportRoundTrips()
    {
        using var dir = new TempDir();
        var (expected, baseDir, attn, peft, modelCfg, finetuneCfg) = AuthorsCheckpoints(dir);
        using var expectedModel = expected;
        string imported = dir.File("imported");
        var (exit, output, err) = CliHarness.Run("import-lolcats", "--base", baseDir, "--attn", attn, "--peft", peft,
            "--config", modelCfg, "--config", finetuneCfg, "--out", imported);
        Assert.True(exit == 0, err);
        Assert.Contains("LoRA merged", output);

        using var ids = Ids(expected.Config.VocabSize);
        using (var model = ModelLoader.Load(ModelSource.Resolve(imported)))
        using (no_grad())
        {
            Assert.Same(LinearizationMethods.LolcatsTk, LinearizationConfig.FromModel(model.Config)!.Method);
            TensorAssert.Close("logits", expected.Forward(ids), model.Forward(ids), 1e-5);
        }

        // export --format lolcats, then import what it wrote: the identity.
        string exported = dir.File("exported"), again = dir.File("again");
        (exit, _, err) = CliHarness.Run("export", "--format", "lolcats", "--model", imported, "--out", exported);
        Assert.True(exit == 0, err);
        Assert.Contains("attention_type: lolcats_llama_window_tk", File.ReadAllText(Path.Combine(exported, LolcatsFormat.ConfigFile)));
        (exit, _, err) = CliHarness.Run("import-lolcats", "--base", Path.Combine(exported, LolcatsFormat.BaseDirectory),
            "--attn", Path.Combine(exported, LolcatsFormat.AttentionFile), "--config", Path.Combine(exported, LolcatsFormat.ConfigFile), "--out", again);
        Assert.True(exit == 0, err);
        using var a = ModelLoader.Load(ModelSource.Resolve(imported));
        using var b = ModelLoader.Load(ModelSource.Resolve(again));
        Assert.Equal(LinearizationConfig.FromModel(a.Config)!.ToJson().ToJsonString(), LinearizationConfig.FromModel(b.Config)!.ToJson().ToJsonString());
        var sa = a.state_dict();
        var sb = b.state_dict();
        Assert.Equal(sa.Keys.Order(), sb.Keys.Order());
        foreach (var (name, t) in sa)
            TensorAssert.BitEqual(name, t, sb[name]);
    }

    [Fact]
    public void WhatTheirCodeOrOurReaderCannotTakeIsRefusedInOneLine()
    {
        using var dir = new TempDir();
        var (expected, baseDir, attn, peft, modelCfg, finetuneCfg) = AuthorsCheckpoints(dir);
        expected.Dispose();

        string Err(params string[] args)
        {
            var (exit, _, err) = CliHarness.Run(args);
            Assert.Equal(1, exit);
            return err.Split('\n')[0];
        }

        // A pickled call in the attention checkpoint.
        string line = Err("import-lolcats", "--base", baseDir, "--attn", Path.Combine(PtReaderTests.FixtureDir, "system.pt"), "--config", modelCfg, "--out", dir.File("o1"));
        Assert.Contains("system.pt", line);
        Assert.Contains("posix.system", line);

        // Their pure linear attention has no equivalent here.
        File.WriteAllText(dir.File("linear.yaml"), ModelYaml.Replace("lolcats_llama_window_tk", "lolcats_llama"));
        line = Err("import-lolcats", "--base", baseDir, "--attn", attn, "--config", dir.File("linear.yaml"), "--out", dir.File("o2"));
        Assert.Contains("linear.yaml: 'attention.attention_type' is lolcats_llama", line);

        // LoRA without the finetune config giving r and lora_alpha.
        line = Err("import-lolcats", "--base", baseDir, "--attn", attn, "--peft", peft, "--config", modelCfg, "--out", dir.File("o3"));
        Assert.Contains("lora_alpha", line);

        // A hybrid with softmax layers: their configs cannot say so.
        string hybrid = dir.File("hybrid");
        var (exit, _, err) = CliHarness.Run("convert", "--model", baseDir, "--method", "lolcats-sw", "--softmax-layers", "1", "--out", hybrid);
        Assert.True(exit == 0, err);
        line = Err("export", "--format", "lolcats", "--model", hybrid, "--out", dir.File("o4"));
        Assert.Contains("'linearization.softmax_layers'", line);
        Assert.Contains("refuses", line);
    }
}
