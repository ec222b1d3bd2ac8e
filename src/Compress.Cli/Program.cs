using Compress.Cli;

return CompressCommand.Run(args, Console.Out, Console.Error);
