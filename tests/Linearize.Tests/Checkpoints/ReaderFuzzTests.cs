using System.Text;
using Linearize.Checkpoints;
using Linearize.Interchange;
using Linearize.Methods;
using Linearize.Modeling;
using Linearize.Tests.Fixtures;
using Linearize.Tokenization;

namespace Linearize.Tests.Checkpoints;

/// <summary>
/// Issue 9: every reader of a file a user hands us, fed thousands of seeded mutations of a valid file (byte flips,
/// truncations, extreme integers written over length fields, edited JSON numbers, inserted and deleted bytes), either
/// loads or throws <see cref="LinearizeException"/> — never an IndexOutOfRange, an overflow, an out-of-memory from a
/// length it believed, or a crash. A failure names the seed that reproduces it.
/// </summary>
[Collection("Torch")]
public sealed class ReaderFuzzTests
{
    private const int Mutations = 1000;

    internal static byte[] Mutate(byte[] original, Random rng)
    {
        var bytes = original.ToList();
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            switch (rng.Next(7))
            {
                case 0: // flip bits
                    bytes[rng.Next(bytes.Count)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1: // truncate
                {
                    int keep = rng.Next(bytes.Count);
                    bytes.RemoveRange(keep, bytes.Count - keep);
                    break;
                }
                case 2: // an extreme 32- or 64-bit integer over whatever was there (lengths, counts, dims, offsets)
                {
                    long[] extremes = { 0, -1, int.MaxValue, int.MinValue, long.MaxValue, 1L << 40, 3, 65536 };
                    var value = BitConverter.GetBytes(extremes[rng.Next(extremes.Length)]);
                    int width = rng.Next(2) == 0 ? 4 : 8;
                    int at = rng.Next(Math.Max(1, Math.Min(bytes.Count, 64 + rng.Next(bytes.Count))));
                    for (int i = 0; i < width && at + i < bytes.Count; i++)
                        bytes[at + i] = value[i];
                    break;
                }
                case 3: // a digit inside JSON text becomes something else
                {
                    var digits = Enumerable.Range(0, bytes.Count).Where(i => bytes[i] is >= (byte)'0' and <= (byte)'9').ToList();
                    if (digits.Count > 0)
                    {
                        int at = digits[rng.Next(digits.Count)];
                        string[] junk = { "9", "-", "99999999999", "1e308", "\"", "", ".5", "-1" };
                        var replacement = Encoding.ASCII.GetBytes(junk[rng.Next(junk.Length)]);
                        bytes.RemoveAt(at);
                        bytes.InsertRange(at, replacement);
                    }

                    break;
                }
                case 4: // insert random bytes
                {
                    int at = rng.Next(bytes.Count + 1);
                    var junk = new byte[1 + rng.Next(8)];
                    rng.NextBytes(junk);
                    bytes.InsertRange(at, junk);
                    break;
                }
                case 5: // delete a run of bytes
                {
                    int at = rng.Next(bytes.Count);
                    bytes.RemoveRange(at, Math.Min(bytes.Count - at, 1 + rng.Next(16)));
                    break;
                }
                default: // a random byte anywhere in the first 256 (headers)
                    bytes[rng.Next(Math.Min(bytes.Count, 256))] = (byte)rng.Next(256);
                    break;
            }
        }

        return bytes.ToArray();
    }

    /// <summary>Runs <paramref name="load"/> on <see cref="Mutations"/> mutations of <paramref name="file"/> (restored
    /// after); returns how many loaded and how many were refused.</summary>
    internal static (int Loaded, int Refused) Fuzz(string file, int seed, Action load)
    {
        byte[] original = File.ReadAllBytes(file);
        var failures = new List<string>();
        int loaded = 0, refused = 0;
        for (int i = 0; i < Mutations; i++)
        {
            var rng = new Random(seed * 100_003 + i);
            File.WriteAllBytes(file, Mutate(original, rng));
            try
            {
                load();
                loaded++;
            }
            catch (LinearizeException)
            {
                refused++;
            }
            catch (Exception e)
            {
                if (failures.Count < 8)
                    failures.Add($"mutation {i} (seed {seed}): {e.GetType().Name}: {e.Message.Split('\n')[0]} at {e.StackTrace?.Split('\n').FirstOrDefault()?.Trim()}");
                else
                    failures.Add("");
            }
        }

        File.WriteAllBytes(file, original);
        Assert.True(failures.Count == 0, $"{Path.GetFileName(file)}: {failures.Count} of {Mutations} mutations escaped as other exceptions:\n" +
                                         string.Join("\n", failures.Where(f => f.Length > 0)));
        Assert.True(refused > Mutations / 4, $"only {refused} of {Mutations} mutations were refused: the mutator is too gentle to prove anything");
        return (loaded, refused);
    }

    private static string TinyHfModel(TempDir dir)
    {
        string path = dir.File("hf");
        using var model = TinyModels.Create("gqa-untied");
        ModelLoader.SaveHuggingFace(model, model.Config, path, null);
        return path;
    }

    [Fact]
    public void SafetensorsMutationsLoadOrAreRefused()
    {
        using var dir = new TempDir();
        string hf = TinyHfModel(dir);
        Fuzz(Path.Combine(hf, "model.safetensors"), 1, () =>
        {
            using var model = ModelLoader.Load(ModelSource.Resolve(hf, null));
        });
    }

    [Fact]
    public void ConfigJsonMutationsLoadOrAreRefused()
    {
        using var dir = new TempDir();
        string hf = TinyHfModel(dir);
        Fuzz(Path.Combine(hf, "config.json"), 2, () =>
        {
            using var model = ModelLoader.Load(ModelSource.Resolve(hf, null));
        });
    }

    [Fact]
    public void Llama2cCheckpointMutationsLoadOrAreRefused()
    {
        using var dir = new TempDir();
        string bin = dir.File("tiny.bin");
        using (var model = TinyModels.Create("mha-tied"))
            Llama2cWriter.Write(model, bin);
        Fuzz(bin, 3, () =>
        {
            using var model = ModelLoader.Load(new ModelSource(ModelSourceKind.Llama2cFile, bin, null));
        });
    }

    [SharedFact("models/stories260K/tok512.bin")]
    public void Llama2cTokenizerMutationsLoadOrAreRefused()
    {
        using var dir = new TempDir();
        string tok = dir.File("tok512.bin");
        File.Copy(SharedData.Tok512, tok);
        Fuzz(tok, 4, () =>
        {
            var t = Llama2cTokenizer.Load(tok);
            var ids = t.Encode("Once upon a time, Lily had 3 cats.", addBos: true);
            t.Decode(ids);
        });
    }
}
