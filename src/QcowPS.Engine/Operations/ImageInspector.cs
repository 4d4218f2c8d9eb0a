using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Qed;

namespace QcowPS.Engine.Operations
{
    /// <summary>Describes images, snapshots, clusters and tables as the output objects the module emits.</summary>
    public static class ImageInspector
    {
        public static QcowImageInfo Describe(VirtualDisk disk)
        {
            var info = new QcowImageInfo
            {
                Path = disk.Path,
                Format = disk.Format,
                VirtualSize = disk.Length,
                FileSize = disk.FileSize,
            };
            if (disk is Nbd.NbdDisk nbd) return DescribeNbd(nbd, info);
            info.ActualSize = HostFileSystem.GetAllocatedSize(disk.Path);
            if (disk is Qcow2Image qcow2)
            {
                var header = qcow2.Header;
                info.Version = header.Version;
                info.Compat = header.Version == 2 ? "0.10" : "1.1";
                info.ClusterSize = header.ClusterSize;
                info.BackingFile = header.BackingFile;
                info.BackingFormat = header.BackingFormat;
                info.DataFile = header.DataFile;
                if (header.HasExternalDataFile) info.DataFileRaw = header.RawExternalData;
                info.CompressionType = header.CompressionType;
                info.RefcountBits = header.RefcountBits;
                info.LazyRefcounts = header.LazyRefcounts;
                info.ExtendedL2 = header.HasExtendedL2;
                info.Encrypted = header.IsEncrypted;
                info.EncryptionFormat = header.CryptMethod == 1 ? "aes" : header.CryptMethod == 2 ? "luks" : null;
                info.Dirty = header.IsDirty;
                info.Corrupt = header.IsCorrupt;
                info.SnapshotCount = (int)header.SnapshotCount;
                info.L1Size = header.L1Size;
                info.L1TableOffset = (long)header.L1TableOffset;
                info.RefcountTableOffset = (long)header.RefcountTableOffset;
                info.RefcountTableClusters = header.RefcountTableClusters;
                info.SnapshotsOffset = (long)header.SnapshotsOffset;
                info.HeaderLength = (int)header.HeaderLength;
                info.IncompatibleFeatures = (Qcow2IncompatibleFeatures)header.IncompatibleFeatures;
                info.CompatibleFeatures = (Qcow2CompatibleFeatures)header.CompatibleFeatures;
                info.AutoclearFeatures = (Qcow2AutoclearFeatures)header.AutoclearFeatures;
                info.HeaderExtensions = new TextList(header.Extensions.Select(extension => extension.Name));
                info.BitmapCount = (int)header.BitmapCount;
            }
            else if (disk is QedImage qed)
            {
                info.ClusterSize = (int)qed.Header.ClusterSize;
                info.BackingFile = qed.Header.BackingFile;
                info.BackingFormat = qed.Header.BackingFile != null && qed.Header.BackingIsRaw ? "raw" : null;
                info.Dirty = qed.Header.NeedsCheck;
            }
            if (info.BackingFile != null)
            {
                try { info.FullBackingFile = BackingResolver.ResolveRelative(disk.Path, info.BackingFile, "backing file"); }
                catch (QcowException) { info.FullBackingFile = null; }
            }
            info.BackingChainDepth = CountBackingLayers(disk);
            return info;
        }

        /// <summary>An NBD export as the server describes it in the handshake; it has no backing chain we can see.</summary>
        private static QcowImageInfo DescribeNbd(Nbd.NbdDisk disk, QcowImageInfo info)
        {
            var client = disk.Client;
            info.FileSize = 0;
            info.ReadOnly = client.ReadOnly;
            info.ExportName = client.ExportName;
            info.Description = client.Description;
            info.NbdFlags = new TextList(client.FlagNames());
            if (!client.ExportNameOnly)
            {
                info.BlockSizeMinimum = client.MinimumBlockSize;
                info.BlockSizePreferred = client.PreferredBlockSize;
                info.BlockSizeMaximum = client.MaximumBlockSize;
            }
            info.MetaContexts = new TextList(client.Contexts.OrderBy(c => c, StringComparer.Ordinal));
            info.Tls = client.Tls;
            info.BackingChainDepth = 0;
            return info;
        }

        /// <summary>Layers below this one: from the opened chain when there is one, else by following the names.</summary>
        private static int? CountBackingLayers(VirtualDisk disk)
        {
            if (disk.Backing != null) return DiskImage.Layers(disk).Count() - 1;
            DiskImage.GetBackingReference(disk, out string name, out _);
            if (name == null) return 0;
            try
            {
                using (var chain = DiskImage.Open(disk.Path, new OpenOptions { Format = disk.Format, Lock = LockMode.None }))
                    return DiskImage.Layers(chain).Count() - 1;
            }
            catch (QcowException) { return null; }
        }

        public static QcowSnapshot Describe(Qcow2Image image, Qcow2Snapshot s) => new QcowSnapshot
        {
            Path = image.Path,
            Id = s.Id,
            Name = s.Name,
            Date = s.Date,
            VmClock = s.VmClock,
            VmStateSize = (long)s.VmStateSize,
            DiskSize = (long)(s.DiskSize ?? image.Header.Size),
            L1TableOffset = s.L1TableOffset,
            L1Size = s.L1Size,
            ExtraDataSize = s.ExtraData.Length,
            Icount = s.Icount,
        };

        /// <summary>
        /// Describes each layer of a backing chain, top first, into layers: one open at a time, so that the
        /// layers that open are described even when a deeper one is missing or damaged (then this throws,
        /// after they are in the list). Backing files follow the rules of DiskImage.Open: recorded format
        /// or magic, never guessed raw, no loops, at most MaxBackingDepth deep.
        /// </summary>
        public static void DescribeChain(string path, OpenOptions options, List<QcowImageInfo> layers)
        {
            if (Nbd.NbdUri.IsNbdUri(path))
            {
                // An export is one layer as far as a client can see.
                using (var disk = DiskImage.Open(path, options)) layers.Add(Describe(disk));
                return;
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            string current = Path.GetFullPath(path);
            var layerOptions = options;
            for (int depth = 0; ; depth++)
            {
                string name, formatName;
                using (var disk = DiskImage.Open(current, new OpenOptions
                {
                    Format = layerOptions.Format, Lock = options.Lock, OpenBackingChain = false,
                    UnrecognisedAsRaw = depth == 0 && options.UnrecognisedAsRaw, WrapHostFile = depth == 0 ? options.WrapHostFile : null,
                }))
                {
                    layers.Add(Describe(disk));
                    DiskImage.GetBackingReference(disk, out name, out formatName);
                }
                seen.Add(current);
                if (name == null) return;
                string next = BackingResolver.ResolveRelative(current, name, "backing file");
                if (seen.Contains(next))
                    throw new QcowException(QcowErrorKind.Corrupt, current, $"Backing chain loop: '{current}' names '{next}', which is already in the chain");
                if (depth + 1 > options.MaxBackingDepth)
                    throw new QcowException(QcowErrorKind.Unsupported, current, $"The backing chain of '{layers[0].Path}' is deeper than {options.MaxBackingDepth} images");
                if (!File.Exists(next))
                    throw new QcowException(QcowErrorKind.NotFound, current, $"Backing file '{name}' of '{current}' does not exist (resolved to '{next}')");
                layerOptions = new OpenOptions { Format = BackingResolver.ParseFormatName(current, formatName) };
                current = next;
            }
        }

        /// <summary>Every guest cluster of a qcow2 image with its L2 entry decoded and its refcount.</summary>
        public static IEnumerable<QcowCluster> Clusters(Qcow2Image image, long offset, long length, bool allocatedOnly, Qcow2Snapshot snapshot = null)
        {
            long diskLength = snapshot == null ? image.Length : (long)(snapshot.DiskSize ?? image.Header.Size);
            foreach (var d in image.EnumerateClusters(offset, length, allocatedOnly, snapshot))
            {
                var c = new QcowCluster
                {
                    Path = image.Path,
                    VirtualOffset = d.GuestOffset,
                    Length = Math.Min(image.ClusterSize, diskLength - d.GuestOffset),
                    ClusterType = d.Type,
                    Copied = d.Copied,
                    L1Index = d.L1Index,
                    L2Index = d.L2Index,
                    L2Entry = d.HasL2Entry ? d.Raw : (ulong?)null,
                    SubclusterBitmap = image.Header.HasExtendedL2 && d.HasL2Entry ? d.Bitmap : (ulong?)null,
                    Layer = 0,
                    LayerPath = image.Path,
                };
                if (d.HostOffset >= 0) c.HostOffset = d.HostOffset;
                if (d.Type == ClusterType.Compressed)
                {
                    c.CompressedSize = d.CompressedSize;
                    c.CompressedSectors = d.CompressedSectors;
                }
                if (d.HostOffset >= 0 && !(image.Header.HasExternalDataFile && d.Type != ClusterType.Compressed))
                    c.Refcount = image.GetRefcount(d.HostOffset >> image.ClusterBits);
                yield return c;
            }
        }

        /// <summary>Runs of the chain as qemu-img map reports them (allocation merged, depth resolved).</summary>
        public static IEnumerable<QcowCluster> Extents(VirtualDisk disk, long offset, long length)
        {
            long end = Math.Min(disk.Length, offset + length);
            var layers = new List<VirtualDisk>(DiskImage.Layers(disk));
            QcowCluster pending = null;
            for (long pos = offset; pos < end;)
            {
                var e = disk.GetChainExtent(pos, end - pos);
                // A disk with no host file (an NBD export) has no host offsets: HostOffset is -1 there.
                long? host = (e.Type == ClusterType.Normal || e.Type == ClusterType.ZeroAllocated || e.Type == ClusterType.Compressed) && e.HostOffset >= 0
                    ? e.HostOffset : (long?)null;
                bool merges = pending != null && pending.ClusterType == e.Type && pending.Layer == e.Depth &&
                    e.Type != ClusterType.Compressed &&
                    (host == null ? pending.HostOffset == null : pending.HostOffset + pending.Length == host);
                if (merges) pending.Length += e.Length;
                else
                {
                    if (pending != null) yield return pending;
                    pending = new QcowCluster
                    {
                        Path = disk.Path, VirtualOffset = pos, Length = e.Length, ClusterType = e.Type,
                        HostOffset = host, Layer = e.Depth,
                        LayerPath = e.Depth < layers.Count && e.Type != ClusterType.Unallocated ? layers[e.Depth].Path : null,
                    };
                }
                pos += e.Length;
            }
            if (pending != null) yield return pending;
        }

        /// <summary>A metadata table's entries; L1 and L2 of a snapshot when one is given (refcounts are the image's).</summary>
        public static IEnumerable<QcowTableEntry> Table(Qcow2Image image, QcowTableKind kind, long? index, bool nonZeroOnly, Qcow2Snapshot snapshot = null)
        {
            int cb = image.ClusterBits;
            switch (kind)
            {
                case QcowTableKind.L1:
                    foreach (var t in image.EnumerateL1(snapshot))
                    {
                        if (index.HasValue && t.Index != index.Value) continue;
                        if (nonZeroOnly && t.Value == 0) continue;
                        long target = (long)(t.Value & Qcow2Image.L1OffsetMask);
                        yield return new QcowTableEntry
                        {
                            Path = image.Path, Table = kind, Index = t.Index, Offset = t.StoredAt, Value = t.Value,
                            Target = target == 0 ? (long?)null : target,
                            Flags = Flags((t.Value & L2Entry.CopiedFlag) != 0 ? "COPIED" : null,
                                (t.Value & Qcow2Image.L1ReservedMask) != 0 ? "RESERVED" : null),
                        };
                    }
                    break;
                case QcowTableKind.L2:
                    foreach (var t in image.EnumerateL2(index, snapshot))
                    {
                        if (nonZeroOnly && t.Value == 0 && t.Bitmap == 0) continue;
                        var e = new L2Entry(t.Value, t.Bitmap, cb, image.Header.HasExtendedL2, image.Header.HasExternalDataFile);
                        long? target = e.IsCompressed ? e.CompressedOffset : (e.HostOffset != 0 ? e.HostOffset : (long?)null);
                        string bitmap = image.Header.HasExtendedL2 && !e.IsCompressed
                            ? $"ALLOC=0x{(uint)t.Bitmap:X8} ZERO=0x{(uint)(t.Bitmap >> 32):X8}" : null;
                        yield return new QcowTableEntry
                        {
                            Path = image.Path, Table = kind, Index = t.Index, ParentIndex = t.ParentIndex, Offset = t.StoredAt,
                            Value = t.Value, Target = target,
                            Flags = Flags(e.IsCopied ? "COPIED" : null, e.IsCompressed ? $"COMPRESSED({e.CompressedSectors} sectors)" : null,
                                !e.IsCompressed && !image.Header.HasExtendedL2 && (t.Value & L2Entry.ZeroFlag) != 0 ? "ZERO" : null,
                                !e.IsCompressed && (t.Value & L2Entry.StandardReservedMask) != 0 ? "RESERVED" : null, bitmap),
                        };
                    }
                    break;
                case QcowTableKind.RefcountTable:
                    foreach (var t in image.EnumerateRefcountTable())
                    {
                        if (index.HasValue && t.Index != index.Value) continue;
                        if (nonZeroOnly && t.Value == 0) continue;
                        long target = (long)(t.Value & Qcow2Image.RefcountTableOffsetMask);
                        yield return new QcowTableEntry
                        {
                            Path = image.Path, Table = kind, Index = t.Index, Offset = t.StoredAt, Value = t.Value,
                            Target = target == 0 ? (long?)null : target,
                            Flags = (t.Value & 0x1FF) != 0 ? "RESERVED" : null,
                        };
                    }
                    break;
                case QcowTableKind.RefcountBlock:
                    foreach (var t in image.EnumerateRefcountBlocks(index))
                    {
                        if (nonZeroOnly && t.Value == 0) continue;
                        yield return new QcowTableEntry
                        {
                            Path = image.Path, Table = kind, Index = t.Index, ParentIndex = t.ParentIndex, Offset = t.StoredAt,
                            Value = t.Value, Target = t.Index << cb,
                        };
                    }
                    break;
            }
        }

        private static string Flags(params string[] flags)
        {
            var set = flags.Where(f => f != null).ToArray();
            return set.Length == 0 ? null : string.Join(" ", set);
        }

        /// <summary>Guest data as pieces of at most one cluster, each saying which layer supplied it.</summary>
        public static IEnumerable<QcowBlock> Blocks(VirtualDisk disk, long offset, long length, int pieceSize)
        {
            long end = offset + length;
            for (long pos = offset; pos < end;)
            {
                long pieceEnd = Math.Min(end, (pos / pieceSize + 1) * pieceSize);
                var e = disk.GetChainExtent(pos, pieceEnd - pos);
                int n = (int)e.Length;
                var data = new byte[n];
                disk.Read(pos, data, 0, n);
                yield return new QcowBlock
                {
                    Path = disk.Path, Offset = pos, Length = n, Data = data, ClusterType = e.Type,
                    HostOffset = (e.Type == ClusterType.Normal || e.Type == ClusterType.Compressed || e.Type == ClusterType.ZeroAllocated) && e.HostOffset >= 0
                        ? e.HostOffset : (long?)null,
                    Layer = e.Depth, LayerPath = e.Layer?.Path,
                };
                pos += n;
            }
        }

        /// <summary>The cluster size of a disk for piecing reads (raw: 64 KiB); each format answers it (VirtualDisk.PieceSize).</summary>
        public static int PieceSize(VirtualDisk disk) => disk.PieceSize;
    }
}
