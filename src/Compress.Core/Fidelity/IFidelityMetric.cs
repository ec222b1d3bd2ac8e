namespace Compress.Core.Fidelity;

/// <summary>
/// One fidelity metric of one output, fed batch by batch (nothing but its statistics is kept). The metrics an
/// output gets depend on its kind (<see cref="FidelityMetrics"/>); each writes its figures into the output's record.
/// </summary>
public interface IFidelityMetric
{
    void Add(in FidelityBatch batch);

    OutputFidelity Fill(OutputFidelity figures);
}
