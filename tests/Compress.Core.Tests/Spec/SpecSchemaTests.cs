namespace Compress.Core.Tests.Spec;

/// <summary>
/// The checked-in JSON Schema is what <see cref="SpecSchema"/> generates from the method descriptors. With
/// COMPRESS_UPDATE_SCHEMA=1 (<c>./build.sh schema</c>) the test writes the generated schema instead of failing.
/// </summary>
public sealed class SpecSchemaTests
{
    [Fact]
    public void The_json_schema_is_generated_from_the_method_descriptors()
    {
        var current = File.ReadAllText(SpecSchema.FilePath);
        var generated = SpecSchema.Generate(current);
        if (Environment.GetEnvironmentVariable("COMPRESS_UPDATE_SCHEMA") == "1")
        {
            File.WriteAllText(SpecSchema.FilePath, generated);
            return;
        }

        Assert.True(generated == current, "schemas/compress-spec.schema.json is not what the method descriptors give: run ./build.sh schema and review the diff");
    }
}
