using BenchmarkDotNet.Running;
using Distcache.Benchmarks;

if (args.Length > 0 && args[0] == "memory")
{
    MemoryFootprint.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1_000_000);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
