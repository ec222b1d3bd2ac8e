namespace Compress.Runtime;

/// <summary>Shape checks for generated wrappers, with messages that name the input and the model's declared shape.</summary>
public static class Shapes
{
    /// <summary>
    /// The shape to run <paramref name="input"/> with: <paramref name="dims"/> holds the model's fixed dimensions and
    /// the caller's values for symbolic ones (null when not given). One missing symbolic dimension is inferred from
    /// <paramref name="length"/>; the element count must match exactly.
    /// </summary>
    /// <param name="input">The input's name, for messages.</param>
    /// <param name="declared">The model's shape as text, e.g. <c>[batch, 784]</c>, for messages.</param>
    /// <param name="length">How many values the caller passed.</param>
    /// <param name="dims">Fixed dimensions, and the caller's symbolic ones (null: infer).</param>
    /// <exception cref="ArgumentException">The data does not fit the shape.</exception>
    public static long[] Resolve(string input, string declared, long length, params long?[] dims)
    {
        long known = 1;
        var missing = -1;
        for (var i = 0; i < dims.Length; i++)
        {
            if (dims[i] is long d)
            {
                if (d < 0)
                {
                    throw new ArgumentException($"Input '{input}' {declared}: dimension {i} is {d}; dimensions cannot be negative.", input);
                }

                known *= d;
            }
            else if (missing >= 0)
            {
                throw new ArgumentException($"Input '{input}' {declared}: give the symbolic dimensions, only one can be inferred from the data's length.", input);
            }
            else
            {
                missing = i;
            }
        }

        var shape = new long[dims.Length];
        for (var i = 0; i < dims.Length; i++)
        {
            shape[i] = dims[i] ?? 0;
        }

        if (missing >= 0)
        {
            if (known == 0 || length % known != 0)
            {
                throw new ArgumentException($"Input '{input}' {declared}: {length} values cannot be split into that shape ({length} is not a multiple of {known}).", input);
            }

            shape[missing] = length / known;
            return shape;
        }

        if (known != length)
        {
            throw new ArgumentException($"Input '{input}' {declared} = [{string.Join(", ", shape)}] needs {known} values; {length} were given.", input);
        }

        return shape;
    }
}
