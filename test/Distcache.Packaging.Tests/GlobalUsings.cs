// Packing, restoring and building are heavy on a 2-core machine: one test class at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
