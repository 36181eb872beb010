using Linearize.Checkpoints.Configuration;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using TorchSharp;
using static TorchSharp.torch;

namespace Linearize.Tests.LinearAttention;

/// <summary>The real model, converted with each method, decodes 1,000 tokens token by token exactly like its full forward pass.</summary>
[Collection("Torch")]
public sealed class ConvertedStoriesDecodeTests
{
    private const int Tokens = 1000; // twice the teacher's 512-position context: only fixed-size state can do this

    [SharedFact("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin")]
    public void EveryMethodDecodesAThousandTokensLikeItsForwardPass()
    {
        var (teacher, _, _) = ModelLoader.LoadWithTokenizer(SharedData.Stories260KDir);
        using var _t = teacher;
        using var g = new torch.Generator(2026);
        var ids = randint(3, teacher.Config.VocabSize, new long[] { 1, Tokens }, dtype: ScalarType.Int64, generator: g);
        foreach (var method in LinearizationMethods.Names)
        {
            using var model = Converter.Convert(teacher, LigerConversionTests.Lin(method, window: 64));
            using var noGrad = no_grad();
            var full = model.Forward(ids);
            using var cache = model.CreateCache();
            var steps = new List<Tensor>(Tokens);
            for (int t = 0; t < Tokens; t++)
            {
                using var scope = NewDisposeScope();
                steps.Add(model.Forward(ids.narrow(1, t, 1), cache).MoveToOuterDisposeScope());
            }

            TensorAssert.Close($"{method}: token-by-token vs forward", full, cat(steps, 1), 1e-4);
            foreach (var s in steps)
                s.Dispose();
        }
    }
}
