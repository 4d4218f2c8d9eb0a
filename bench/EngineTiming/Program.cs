using System;
using System.Diagnostics;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Operations.Conversion;
using QcowPS.Engine.Qcow2;

string source = args[0], dest = args[1], mode = args.Length > 2 ? args[2] : "qcow2";
int threads = args.Length > 3 ? int.Parse(args[3]) : Environment.ProcessorCount;
var format = args.Length > 4 && args[4] == "Raw" ? ImageFormat.Raw : ImageFormat.Auto;
var options = new ConvertOptions { Threads = threads, Overwrite = true, CompressionLevel = args.Length > 5 ? int.Parse(args[5]) : 0 };
switch (mode)
{
    case "raw": options.DestinationFormat = ImageFormat.Raw; break;
    case "zlib": options.Compress = true; break;
    case "zstd": options.Compress = true; options.CompressionType = Qcow2CompressionType.Zstd; break;
}
// QCOWPS_TIMING_REPEAT=n: convert n times in this process and report each (the later ones are warm, as in a session).
int repeat = int.TryParse(Environment.GetEnvironmentVariable("QCOWPS_TIMING_REPEAT"), out int rr) && rr > 0 ? rr : 1;
for (int iteration = 0; iteration < repeat; iteration++)
using (var disk = DiskImage.Open(source, new OpenOptions { Format = format }))
{
    var timing = new ConversionTiming();
    var watch = Stopwatch.StartNew();
    var r = ImageConverter.Convert(disk, dest, options, timing);
    Console.WriteLine(timing); Console.WriteLine($"{mode}: {watch.Elapsed.TotalSeconds:F2} s, {r.FileSize / 1048576.0:F1} MiB, data {r.DataClusters} compressed {r.CompressedClusters} zero {r.ZeroClusters}; peak {Process.GetCurrentProcess().PeakWorkingSet64 >> 20} MiB; GCs {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}");
}
// Diagnostics: which codec backends this runtime reaches.
Console.WriteLine("native zlib: " + typeof(ImageConverter).Assembly.GetType("QcowPS.Engine.Compression.DeflateCodec").GetProperty("NativeAvailable").GetValue(null)
    + ", native zstd: " + typeof(ImageConverter).Assembly.GetType("QcowPS.Engine.Compression.NativeZstd").GetProperty("Available").GetValue(null));
