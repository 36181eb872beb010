using System.Text.Json.Nodes;

namespace Linearize.Training.Optim;

/// <summary>
/// Learning-rate schedules: <c>constant</c>; <c>cosine</c> with linear warm-up (transformers
/// <c>get_cosine_schedule_with_warmup</c>); <c>plateau</c> (<c>torch.optim.lr_scheduler.ReduceLROnPlateau</c>, mode min,
/// threshold 1e-4 relative, stepped on each evaluation loss — Liger's and LoLCATs' schedule, docs/METHODS.md §1.5).
/// The whole state is a few numbers, saved in checkpoints.
/// </summary>
public sealed class LearningRateSchedule
{
    public static readonly string[] Kinds = { "constant", "cosine", "plateau" };
    private const double PlateauThreshold = 1e-4; // ReduceLROnPlateau default, threshold_mode "rel"

    public LearningRateSchedule(string kind, double baseLr, long totalSteps, long warmupSteps = 0, double plateauFactor = 0.1,
        int plateauPatience = 10, double minLr = 1e-5)
    {
        if (!Kinds.Contains(kind))
            throw new LinearizeException($"--schedule must be one of {string.Join(", ", Kinds)}, got '{kind}'");
        Kind = kind;
        BaseLr = baseLr;
        TotalSteps = Math.Max(1, totalSteps);
        WarmupSteps = warmupSteps;
        PlateauFactor = plateauFactor;
        PlateauPatience = plateauPatience;
        MinLr = minLr;
        PlateauLr = baseLr;
    }

    public string Kind { get; }
    public double BaseLr { get; }
    public long TotalSteps { get; }
    public long WarmupSteps { get; }
    public double PlateauFactor { get; }
    public int PlateauPatience { get; }
    public double MinLr { get; }

    /// <summary>The current plateau learning rate (reduced by <see cref="PlateauFactor"/> after patience runs out).</summary>
    public double PlateauLr { get; private set; }
    public double BestLoss { get; private set; } = double.PositiveInfinity;
    public int BadEvaluations { get; private set; }

    /// <summary>Learning rate for optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(long step)
    {
        double warm = WarmupSteps > 0 && step < WarmupSteps ? (step + 1) / (double)WarmupSteps : 1.0;
        return Kind switch
        {
            "constant" => BaseLr * warm,
            "cosine" when step < WarmupSteps => BaseLr * warm,
            "cosine" => BaseLr * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1.0, (step - WarmupSteps) / (double)Math.Max(1, TotalSteps - WarmupSteps)))),
            _ => PlateauLr * warm,
        };
    }

    /// <summary>Reports an evaluation loss (only the plateau schedule reacts).</summary>
    public void OnEvaluation(double loss)
    {
        if (Kind != "plateau")
            return;
        if (loss < BestLoss * (1 - PlateauThreshold))
        {
            BestLoss = loss;
            BadEvaluations = 0;
            return;
        }

        if (++BadEvaluations > PlateauPatience)
        {
            PlateauLr = Math.Max(MinLr, PlateauLr * PlateauFactor);
            BadEvaluations = 0;
        }
    }

    public JsonObject SaveState() => new()
    {
        ["plateau_lr"] = PlateauLr,
        ["best_loss"] = double.IsPositiveInfinity(BestLoss) ? null : BestLoss,
        ["bad_evaluations"] = BadEvaluations,
    };

    public void LoadState(JsonObject state)
    {
        PlateauLr = state["plateau_lr"]!.GetValue<double>();
        BestLoss = state["best_loss"]?.GetValue<double>() ?? double.PositiveInfinity;
        BadEvaluations = state["bad_evaluations"]!.GetValue<int>();
    }
}
