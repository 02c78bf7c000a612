// Real processes and ports: two test classes at a time keep a 2-core machine from timing out start-ups.
[assembly: CollectionBehavior(MaxParallelThreads = 2)]

// Unix sockets, signals, SO_PEERCRED: these tests describe Linux behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
