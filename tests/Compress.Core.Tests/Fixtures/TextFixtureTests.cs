using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Compress.Core.Data;
using Compress.Core.Tests.TestSupport;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Tokenizers;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Fixtures;

/// <summary>
/// The text-encoder fixture (tests/fixtures/text, made by eng/fixtures/make_text_encoder.py): its vocabulary and
/// held-out sentences tokenize in .NET to exactly the ids of its data files, and the encoder runs in ONNX Runtime
/// giving embeddings that tell sentences apart.
/// </summary>
public sealed class TextFixtureTests(ITestOutputHelper output)
{
    private const int Rows = 128, Length = 32, Hidden = 128;

    /// <summary>PyTorch's mean pairwise cosine of the mean-pooled evaluation embeddings (tests/fixtures/text/README.md).</summary>
    private const double PyTorchMeanCosine = 0.2922;

    /// <summary>
    /// BERT's pre-tokenization: every punctuation character alone (Unicode P* and, as in BERT's tokenization.py, all
    /// ASCII characters that are neither letters, digits nor space), runs of anything else between whitespace.
    /// BertTokenizer's default, <c>\w+|[\p{P}]</c>, drops the symbols <c>$ + &lt; = &gt; ^ ` | ~</c> and keeps <c>_</c>
    /// inside words (dotnet/machinelearning#7725).
    /// </summary>
    private static readonly Regex BertPreTokenization = new(@"[!-/:-@\[-`{-~\p{P}]|[^\s!-/:-@\[-`{-~\p{P}]+", RegexOptions.CultureInvariant);

    private static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "fixtures", "text", name);

    private static BertTokenizer Tokenizer(PreTokenizer? preTokenizer = null) => BertTokenizer.Create(Fixture("vocab.txt"),
        new BertOptions { LowerCaseBeforeTokenization = true, RemoveNonSpacingMarks = true, PreTokenizer = preTokenizer });

    private static string[] Sentences() => File.ReadAllLines(Fixture("sentences.txt"), Encoding.UTF8);

    [Fact]
    public void Bert_tokenizer_reproduces_the_ids_of_the_calibration_and_evaluation_data()
    {
        var tokenizer = Tokenizer(new RegexPreTokenizer(BertPreTokenization, null));
        Assert.Equal((0, 1, 2, 3, 4), (tokenizer.PaddingTokenId, tokenizer.UnknownTokenId, tokenizer.ClassificationTokenId, tokenizer.SeparatorTokenId, tokenizer.MaskingTokenId));
        var sentences = Sentences();
        Assert.True(sentences.Length >= 2 * Rows, $"{sentences.Length} sentences");

        foreach (var (file, first) in new[] { ("calibration.npz", 0), ("evaluation.npz", Rows) })
        {
            var arrays = ArrayFile.Read(Fixture(file));
            Assert.Equal(new long[] { Rows, Length }, arrays["input_ids"].Shape);
            Assert.Equal(new long[] { Rows, Length }, arrays["attention_mask"].Shape);
            var ids = arrays["input_ids"].ToInt64();
            var mask = arrays["attention_mask"].ToInt64();
            for (var row = 0; row < Rows; row++)
            {
                var sentence = sentences[first + row];
                var expected = Row(tokenizer, sentence);
                Assert.True(expected.SequenceEqual(ids.AsSpan(row * Length, Length).ToArray()), $"{file} row {row}: '{sentence}'\n  .NET:  {string.Join(' ', expected)}\n  numpy: {string.Join(' ', ids.AsSpan(row * Length, Length).ToArray())}");
                Assert.Equal(expected.Select(id => id == tokenizer.PaddingTokenId ? 0L : 1L), mask.AsSpan(row * Length, Length).ToArray());
            }
        }
    }

    [Fact]
    public void Default_bert_tokenizer_differs_only_on_sentences_with_symbols_or_underscores()
    {
        var exact = Tokenizer(new RegexPreTokenizer(BertPreTokenization, null));
        var byDefault = Tokenizer();
        var differing = Sentences().Take(2 * Rows)
            .Where(s => !exact.EncodeToIds(s, addSpecialTokens: false).SequenceEqual(byDefault.EncodeToIds(s, addSpecialTokens: false)))
            .ToList();
        output.WriteLine($"{differing.Count} of {2 * Rows} sentences tokenize differently with BertTokenizer's default pre-tokenizer:");
        differing.ForEach(output.WriteLine);
        Assert.All(differing, s => Assert.Contains(s, c => c == '_' || char.GetUnicodeCategory(c) is UnicodeCategory.MathSymbol
            or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol));
    }

    [Fact]
    public void Encoder_runs_in_onnx_runtime_and_mean_pooled_embeddings_differ_between_sentences()
    {
        var arrays = ArrayFile.Read(Fixture("evaluation.npz"));
        var ids = arrays["input_ids"].ToInt64();
        var mask = arrays["attention_mask"].ToInt64();
        using var session = OrtHarness.Open(Fixture("text_encoder.onnx"));
        using var inputIds = OrtValue.CreateTensorValueFromMemory(ids, [Rows, Length]);
        using var attentionMask = OrtValue.CreateTensorValueFromMemory(mask, [Rows, Length]);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, ["input_ids", "attention_mask"], [inputIds, attentionMask], ["last_hidden_state"]);

        Assert.Equal(new long[] { Rows, Length, Hidden }, results[0].GetTensorTypeAndShape().Shape);
        var hidden = results[0].GetTensorDataAsSpan<float>();
        var pooled = new double[Rows][];
        for (var row = 0; row < Rows; row++)
        {
            pooled[row] = new double[Hidden];
            var tokens = 0;
            for (var t = 0; t < Length; t++)
            {
                if (mask[row * Length + t] == 0)
                {
                    continue;
                }

                tokens++;
                for (var h = 0; h < Hidden; h++)
                {
                    pooled[row][h] += hidden[(row * Length + t) * Hidden + h];
                }
            }

            Assert.True(tokens > 0 && pooled[row].All(double.IsFinite), $"row {row}");
            var norm = Math.Sqrt(pooled[row].Sum(v => v * v));
            for (var h = 0; h < Hidden; h++)
            {
                pooled[row][h] /= norm; // the mean's direction: dividing by the token count would not change a cosine
            }
        }

        double sum = 0;
        var pairs = 0;
        for (var a = 0; a < Rows; a++)
        {
            for (var b = a + 1; b < Rows; b++)
            {
                sum += pooled[a].Zip(pooled[b], (x, y) => x * y).Sum();
                pairs++;
            }
        }

        var meanCosine = sum / pairs;
        output.WriteLine($"mean pairwise cosine of the mean-pooled embeddings of {Rows} sentences: {meanCosine:F4} (PyTorch {PyTorchMeanCosine})");
        Assert.True(meanCosine < 0.99, $"mean pairwise cosine {meanCosine}");
        Assert.InRange(meanCosine, PyTorchMeanCosine - 1e-3, PyTorchMeanCosine + 1e-3);
    }

    /// <summary>[CLS] pieces [SEP], truncated to <see cref="Length"/> with [SEP] last, padded with [PAD].</summary>
    private static long[] Row(BertTokenizer tokenizer, string sentence)
    {
        var pieces = tokenizer.EncodeToIds(sentence, addSpecialTokens: false);
        var row = new long[Length];
        row[0] = tokenizer.ClassificationTokenId;
        var count = Math.Min(pieces.Count, Length - 2);
        for (var i = 0; i < count; i++)
        {
            row[1 + i] = pieces[i];
        }

        row[1 + count] = tokenizer.SeparatorTokenId;
        return row;
    }
}
