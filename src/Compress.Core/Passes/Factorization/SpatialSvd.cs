using static TorchSharp.torch;

namespace Compress.Core.Passes.Factorization;

/// <summary>
/// The spatial form of a k×k Conv (Tai et al., algorithms.md §16): a kh×1 Conv C_in→r then a 1×kw Conv r→C_out,
/// W[o, c, i, j] ≈ Σ_k H[o, k, j]·V[k, c, i], the SVD of W as M [(c, i), (o, j)]. Whitened by a Kronecker
/// approximation of the im2col patches' second moment, C ≈ C_v ⊗ C_h (C_v over (channel, row), the mean over the kw
/// columns; C_h over the columns, the mean over (channel, row)): the SVD of L_vᵀ·M·(I ⊗ L_h) truncated to rank r
/// minimises the output error in that metric. V is taken from it and H refitted by least squares in the full metric.
/// The rank and the choice against the channel form use the true error in the full metric,
/// tr(ΔW·C·ΔWᵀ) / tr(W·C·Wᵀ). Float64 throughout; tensors in the caller's dispose scope.
/// </summary>
internal sealed class SpatialSvd
{
    private readonly Tensor _weight;   // [o, c·kh·kw]
    private readonly Tensor _moment;   // C, damped
    private readonly Tensor _vertical; // L_v
    private readonly Tensor _u;
    private readonly Tensor _singular;
    private readonly long _outputs;
    private readonly long _inputs;
    private readonly long _kh;
    private readonly long _kw;

    private SpatialSvd(Tensor weight, Tensor moment, long[] dims)
    {
        (_outputs, _inputs, _kh, _kw) = (dims[0], dims[1], dims[2], dims[3]);
        _weight = weight;
        _moment = moment;
        var rows = _inputs * _kh;
        var blocks = moment.reshape(_inputs, _kh, _kw, _inputs, _kh, _kw);
        var vertical = blocks.diagonal(0, 2, 5).mean([-1]).reshape(rows, rows);
        var horizontal = blocks.permute(2, 5, 0, 1, 3, 4).reshape(_kw, _kw, rows, rows).diagonal(0, 2, 3).mean([-1]);
        _vertical = linalg.cholesky(vertical);
        var lh = linalg.cholesky(horizontal);
        var m = weight.reshape(_outputs, _inputs, _kh, _kw).permute(1, 2, 0, 3).reshape(rows, _outputs, _kw); // [(c,i), o, j]
        var whitened = _vertical.t().mm(m.matmul(lh).reshape(rows, _outputs * _kw));
        (_u, _singular, _) = linalg.svd(whitened, fullMatrices: false);
    }

    /// <summary>The largest rank: min(C_in·kh, C_out·kw).</summary>
    public long MaxRank => _singular.shape[0];

    /// <param name="weight">W as [C_out, C_in·kh·kw], float64.</param>
    /// <param name="moment">The im2col patches' damped second moment, float64.</param>
    /// <param name="dims">W's dimensions [C_out, C_in, kh, kw].</param>
    public static SpatialSvd Of(Tensor weight, Tensor moment, long[] dims) => new(weight, moment, dims);

    /// <summary>Multiply-adds per output position at rank r: r·(C_in·kh + C_out·kw) (both Convs run at the output positions).</summary>
    public long MultiplyAdds(long rank) => rank * (_inputs * _kh + _outputs * _kw);

    /// <summary>V [r, C_in, kh, 1] and H [C_out, r, 1, kw] in float32, ‖W − W_r‖² / ‖W‖², and the output error tr(ΔW·C·ΔWᵀ) / tr(W·C·Wᵀ).</summary>
    public (Tensor V, Tensor H, double Error, double OutputError) Truncate(long rank)
    {
        var root = _singular.narrow(0, 0, rank).sqrt();
        var left = linalg.solve(_vertical.t(), _u.narrow(1, 0, rank).mul(root.unsqueeze(0))); // L_v⁻ᵀ U_r Σ½ [(c,i), r]
        var rows = _inputs * _kh;

        // H refitted in the full metric for this V: the second Conv sees z = P·x, P [(k, j), (c, i, j')] = V[k, (c, i)]·δ_jj',
        // so H = W·C·Pᵀ (P·C·Pᵀ)⁻¹ minimises tr(ΔW·C·ΔWᵀ) (never worse than the Kronecker SVD's own H).
        var p = left.t().reshape(rank, 1, rows, 1).mul(eye(_kw, dtype: ScalarType.Float64).reshape(1, _kw, 1, _kw)).reshape(rank * _kw, rows * _kw);
        var cp = _moment.mm(p.t());
        var h = linalg.solve(p.mm(cp), _weight.mm(cp).t()).t(); // [o, (k, j)]
        var approximation = h.mm(p); // [o, (c, i, j)], W's own layout
        var delta = _weight.sub(approximation);
        var error = delta.square().sum().div(_weight.square().sum().clamp_min(1e-30)).item<double>();
        var output = delta.mm(_moment).mul(delta).sum().div(_weight.mm(_moment).mul(_weight).sum().clamp_min(1e-30)).item<double>();
        var v = left.t().reshape(rank, _inputs, _kh, 1).to_type(ScalarType.Float32);
        return (v, h.reshape(_outputs, rank, 1, _kw).to_type(ScalarType.Float32), error, output);
    }
}
