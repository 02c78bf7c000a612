global using Distcache.Apps.TicketKeys;

// Real processes, real ports and (for the web servers) timing across rotations: two classes at a time at most on a
// 2-core machine.
[assembly: CollectionBehavior(MaxParallelThreads = 2)]

// Unix sockets, file modes and signals: these tests describe Linux behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
