using System.IO;
using System.Text;

namespace Compress.Spec.Manifest
{
    /// <summary>C# names for models: <c>fashion_mlp.onnx</c> → <c>FashionMlp</c> (the wrapper adds <c>Model</c>).</summary>
    public static class WrapperNames
    {
        public static string FromFileName(string path)
        {
            var stem = Path.GetFileNameWithoutExtension(path);
            var name = new StringBuilder();
            var upper = true;
            foreach (var c in stem)
            {
                if (char.IsLetterOrDigit(c))
                {
                    name.Append(upper ? char.ToUpperInvariant(c) : c);
                    upper = false;
                }
                else
                {
                    upper = true;
                }
            }

            if (name.Length == 0 || char.IsDigit(name[0]))
            {
                name.Insert(0, "Model");
            }

            return name.ToString();
        }
    }
}
