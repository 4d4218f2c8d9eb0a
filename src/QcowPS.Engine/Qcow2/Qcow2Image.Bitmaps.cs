using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Persistent dirty bitmaps (QEMU: block/qcow2-bitmap.c; spec: "Bitmaps").
    //
    // Life cycle in a writable session, as QEMU keeps it: at the first change of any kind, every
    // enabled bitmap that is usable and not already in use is loaded and the directory is stored
    // again with those bitmaps marked in_use (a crash from here on leaves them known-stale, never
    // wrong). Guest writes, zeroing, snapshot reverts and resizes then change the bits in memory. On
    // a clean close the changed bitmaps get new data clusters and tables, a new directory is written,
    // refcounts are made durable, and only then does the header point at the new directory (one
    // sector write); the old clusters are freed last. A crash anywhere leaves the old directory (in
    // use) and at most leaked clusters.
    public sealed partial class Qcow2Image
    {
        // Bitmaps header extension fields (spec: "Bitmaps extension").

        // Bitmap directory entry fields (spec: "Bitmap directory").
        private const int BmeTableOffset = 0;
        private const int BmeTableSize = 8;
        private const int BmeFlags = 12;
        private const int BmeType = 16;
        private const int BmeGranularityBits = 17;
        private const int BmeNameSize = 18;
        private const int BmeExtraDataSize = 20;
        private const int BmeFixedLength = 24;

        // Bitmap table entries (spec: "Bitmap table").
        private const ulong BitmapTableOffsetMask = 0x00FF_FFFF_FFFF_FE00UL;
        private const ulong BitmapTableAllOnes = 1;
        private const ulong BitmapTableReservedMask = 0xFF00_0000_0000_01FEUL;

        private List<Qcow2Bitmap> _bitmaps;
        private readonly List<Qcow2Bitmap> _removedBitmaps = new List<Qcow2Bitmap>();
        private bool _bitmapsChanged;
        private bool _bitmapTrackingStarted;

        /// <summary>Whether the header's bitmaps extension is valid (v3, autoclear bit set, extension present).</summary>
        private bool HasConsistentBitmapExtension =>
            Header.Version >= 3 && (Header.AutoclearFeatures & (ulong)Qcow2AutoclearFeatures.Bitmaps) != 0 &&
            Header.Extensions.Any(e => e.Type == Qcow2HeaderExtension.Bitmaps);

        /// <summary>The persistent bitmaps, in directory order.</summary>
        public IReadOnlyList<Qcow2Bitmap> Bitmaps
        {
            get { lock (_gate) return LoadedBitmaps().ToArray(); }
        }

        /// <summary>The bitmap with this name (names are case-sensitive, as in QEMU), or null.</summary>
        public Qcow2Bitmap FindBitmap(string name)
        {
            lock (_gate) return LoadedBitmaps().FirstOrDefault(b => b.Name == name);
        }

        /// <summary>
        /// The dirty and clean runs of a bitmap over [offset, offset + length) (the whole disk by
        /// default), merged, as qemu-nbd's qemu:dirty-bitmap context reports them.
        /// </summary>
        public IReadOnlyList<QcowBitmapExtent> GetBitmapExtents(string name, long offset = 0, long length = -1)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                var bm = UsableBitmap(name, forChange: false);
                long end = length < 0 ? Length : Math.Min(Length, offset + length);
                var result = new List<QcowBitmapExtent>();
                foreach (var r in bm.Runs())
                {
                    long s = Math.Max(r.Offset, offset), e = Math.Min(r.Offset + r.Length, end);
                    if (s >= e) continue;
                    result.Add(new QcowBitmapExtent { Path = Path, Name = bm.Name, Offset = s, Length = e - s, Dirty = r.Dirty });
                }
                return result;
            }
        }

        /// <summary>The whole bitmap's runs (GetBitmapExtents), checked and read now.</summary>
        public override IEnumerable<QcowBitmapExtent> GetDirtyExtents(string bitmap) => GetBitmapExtents(bitmap);

        /// <summary>Bytes of the disk a bitmap marks dirty, or null when it is in use (stale) or unusable.</summary>
        public long? GetBitmapDirtyBytes(string name)
        {
            lock (_gate)
            {
                var bm = LoadedBitmaps().FirstOrDefault(b => b.Name == name);
                if (bm == null || bm.InUse || bm.Unusable != null) return null;
                LoadBitmapData(bm);
                return bm.DirtyBytes();
            }
        }

        /// <summary>Adds an empty bitmap (qemu-img bitmap --add); granularityBits null = QEMU's default for the cluster size.</summary>
        public Qcow2Bitmap AddBitmap(string name, int? granularityBits = null, bool enabled = true)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                if (Header.Version < 3)
                    throw QcowException.Unsupported(Path, $"This is a version 2 image; persistent bitmaps need version 3 (qemu-img amend -o compat=1.1)");
                var bitmaps = LoadedBitmaps();
                int bytes = ValidateBitmapName(name);
                if (bitmaps.Any(b => b.Name == name))
                    throw new QcowException(QcowErrorKind.BitmapExists, Path, $"A bitmap named '{name}' already exists in '{Path}'");
                if (bitmaps.Count >= Qcow2Bitmap.MaxBitmaps)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"'{Path}' already has {bitmaps.Count} bitmaps, QEMU's limit");
                // QEMU's default (bdrv_get_default_bitmap_granularity): the cluster size, within 4 KiB..64 KiB.
                int bits = granularityBits ?? Math.Min(16, Math.Max(12, ClusterBits));
                if (bits < Qcow2Bitmap.MinGranularityBits || bits > Qcow2Bitmap.MaxGranularityBits)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"Granularity {1L << bits} is out of range: 512 bytes to 2 GiB, a power of two");
                long dataBytes = Qcow2Bitmap.DataBytesFor(Length, bits);
                if (dataBytes > Qcow2Bitmap.MaxDataBytes || (dataBytes + ClusterSize - 1) / ClusterSize > Qcow2Bitmap.MaxTableEntries)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                        $"A bitmap of granularity {1L << bits} over {Length} bytes needs {dataBytes} bytes of bitmap data, above QEMU's limit of {Qcow2Bitmap.MaxDataBytes}; use a larger granularity");
                long directory = bitmaps.Sum(b => EntryLength(b)) + ((BmeFixedLength + bytes + 7) & ~7);
                if (directory > Qcow2Bitmap.MaxDirectoryBytes)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"The bitmap directory would be {directory} bytes, above QEMU's limit of {Qcow2Bitmap.MaxDirectoryBytes}");
                // Checked before the first change of the session: a refused request leaves the file as it was.
                ThrowIfReadOnly();
                var bm = new Qcow2Bitmap { Name = name, GranularityBits = bits, Flags = enabled ? Qcow2Bitmap.AutoFlag : 0 };
                bm.InitializeEmpty(Length, ClusterSize);
                bm.Modified = true;
                bm.Tracking = enabled;
                bitmaps.Add(bm);
                _bitmapsChanged = true;
                return bm;
            }
        }

        /// <summary>Removes a bitmap (qemu-img bitmap --remove); works on stale (in use) bitmaps too.</summary>
        public void RemoveBitmap(string name)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                var bm = ExistingBitmap(name);
                ThrowIfReadOnly();
                _bitmaps.Remove(bm);
                _removedBitmaps.Add(bm);
                _bitmapsChanged = true;
            }
        }

        /// <summary>Clears every bit (qemu-img bitmap --clear).</summary>
        public void ClearBitmap(string name)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                var bm = UsableBitmap(name, forChange: true);
                ThrowIfReadOnly();
                bm.Clear();
                _bitmapsChanged = true;
            }
        }

        /// <summary>Enables (auto: records writes) or disables a bitmap (qemu-img bitmap --enable / --disable).</summary>
        public void SetBitmapEnabled(string name, bool enabled)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                var bm = UsableBitmap(name, forChange: true);
                ThrowIfReadOnly();
                bm.Flags = enabled ? bm.Flags | Qcow2Bitmap.AutoFlag : bm.Flags & ~Qcow2Bitmap.AutoFlag;
                bm.Tracking = enabled;
                bm.Modified = true;
                _bitmapsChanged = true;
            }
        }

        /// <summary>Sets in the target bitmap every range the runs mark dirty (qemu-img bitmap --merge).</summary>
        public void MergeBitmap(string targetName, IEnumerable<QcowBitmapExtent> source)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                var target = UsableBitmap(targetName, forChange: true);
                ThrowIfReadOnly();
                foreach (var run in source.Where(r => r.Dirty)) target.SetRange(run.Offset, run.Length);
                target.Modified = true;
                _bitmapsChanged = true;
            }
        }

        /// <summary>Merges another bitmap of this image into the target.</summary>
        public void MergeBitmap(string targetName, string sourceName) => MergeBitmap(targetName, GetBitmapExtents(sourceName));

        // ---- Internals -------------------------------------------------------------------------

        private static int ValidateBitmapName(string name)
        {
            if (string.IsNullOrEmpty(name))
                throw new QcowException(QcowErrorKind.InvalidArgument, "A bitmap name must not be empty");
            int bytes = Encoding.UTF8.GetByteCount(name);
            if (bytes > Qcow2Bitmap.MaxNameBytes)
                throw new QcowException(QcowErrorKind.InvalidArgument, $"The bitmap name is {bytes} bytes long; QEMU allows at most {Qcow2Bitmap.MaxNameBytes}");
            return bytes;
        }

        private Qcow2Bitmap ExistingBitmap(string name) =>
            LoadedBitmaps().FirstOrDefault(b => b.Name == name) ??
            throw new QcowException(QcowErrorKind.BitmapNotFound, Path, $"No bitmap named '{name}' in '{Path}'");

        /// <summary>A bitmap whose bits can be read or changed, loaded; a stale or unusable one is an error, as in QEMU.</summary>
        private Qcow2Bitmap UsableBitmap(string name, bool forChange)
        {
            var bm = ExistingBitmap(name);
            if (bm.Unusable != null)
                throw QcowException.Unsupported(Path, $"Bitmap '{name}' cannot be used: {bm.Unusable}");
            if (bm.InUse)
                throw new QcowException(QcowErrorKind.BitmapInUse, Path,
                    $"Bitmap '{name}' in '{Path}' is in use: a writer did not close the image cleanly, so it may be stale and cannot be " +
                    (forChange ? "changed" : "read") + "; remove it (Remove-QcowBitmap) and take a full backup");
            LoadBitmapData(bm);
            return bm;
        }

        /// <summary>The directory, read and validated on first use (empty when the extension is absent or inconsistent).</summary>
        private List<Qcow2Bitmap> LoadedBitmaps()
        {
            if (_bitmaps != null) return _bitmaps;
            var list = new List<Qcow2Bitmap>();
            if (HasConsistentBitmapExtension && Header.BitmapCount > 0) ReadBitmapDirectory(list);
            _bitmaps = list;
            return list;
        }

        private void ReadBitmapDirectory(List<Qcow2Bitmap> list)
        {
            uint count = Header.BitmapCount;
            long offset = (long)Header.BitmapDirectoryOffset;
            ulong size = Header.BitmapDirectorySize;
            if (count > Qcow2Bitmap.MaxBitmaps)
                throw QcowException.Corrupt(Path, $"The bitmaps extension lists {count} bitmaps, above QEMU's limit of {Qcow2Bitmap.MaxBitmaps}");
            if (size > (ulong)Qcow2Bitmap.MaxDirectoryBytes || size < (ulong)count * BmeFixedLength)
                throw QcowException.Corrupt(Path, $"The bitmap directory size {size} does not fit {count} entries (at most {Qcow2Bitmap.MaxDirectoryBytes} bytes)");
            if (offset <= 0 || offset % ClusterSize != 0 || offset > _file.Length - (long)size)
                throw QcowException.Corrupt(Path, $"The bitmap directory offset 0x{offset:X} is not a cluster offset inside the file");
            var dir = new byte[size];
            _file.ReadExactly(offset, dir, 0, dir.Length, "bitmap directory");
            int pos = 0;
            var names = new HashSet<string>();
            for (uint n = 0; n < count; n++)
            {
                if (pos + BmeFixedLength > dir.Length)
                    throw QcowException.Corrupt(Path, $"Bitmap directory entry {n} runs past the directory's {size} bytes");
                int nameSize = BigEndian.U16(dir, pos + BmeNameSize);
                uint extra = BigEndian.U32(dir, pos + BmeExtraDataSize);
                long entryEnd = pos + BmeFixedLength + (long)extra + nameSize;
                if (nameSize == 0 || nameSize > Qcow2Bitmap.MaxNameBytes || entryEnd > dir.Length)
                    throw QcowException.Corrupt(Path, $"Bitmap directory entry {n} has a name of {nameSize} bytes and {extra} bytes of extra data, which do not fit the directory");
                var bm = new Qcow2Bitmap
                {
                    TableOffset = (long)BigEndian.U64(dir, pos + BmeTableOffset),
                    TableSize = BigEndian.U32(dir, pos + BmeTableSize),
                    Flags = BigEndian.U32(dir, pos + BmeFlags),
                    Type = dir[pos + BmeType],
                    GranularityBits = dir[pos + BmeGranularityBits],
                    ExtraData = new byte[extra],
                    Name = Encoding.UTF8.GetString(dir, pos + BmeFixedLength + (int)extra, nameSize),
                };
                Array.Copy(dir, pos + BmeFixedLength, bm.ExtraData, 0, (int)extra);
                bm.InUse = (bm.Flags & Qcow2Bitmap.InUseFlag) != 0;
                bm.Flags &= ~Qcow2Bitmap.InUseFlag;
                if (!names.Add(bm.Name))
                    throw QcowException.Corrupt(Path, $"The bitmap name '{bm.Name}' appears twice in the bitmap directory");
                if (bm.TableOffset % ClusterSize != 0 || bm.TableOffset < 0 || bm.TableOffset > _file.Length - bm.TableSize * 8L)
                    throw QcowException.Corrupt(Path, $"Bitmap '{bm.Name}' has its table at 0x{bm.TableOffset:X} ({bm.TableSize} entries), not a cluster inside the file");
                bm.Unusable = UnusableReason(bm);
                list.Add(bm);
                pos = (int)((entryEnd + 7) & ~7L);
            }
            if (pos != dir.Length)
                throw QcowException.Corrupt(Path, $"The bitmap directory is {size} bytes but its {count} entries take {pos}");
        }

        private string UnusableReason(Qcow2Bitmap bm)
        {
            if (bm.Type != Qcow2Bitmap.DirtyTrackingType) return $"its type {bm.Type} is not a dirty tracking bitmap";
            if ((bm.Flags & ~Qcow2Bitmap.KnownFlags) != 0) return $"its flags 0x{bm.Flags:X} have reserved bits set";
            if (bm.ExtraData.Length > 0 && (bm.Flags & Qcow2Bitmap.ExtraDataCompatibleFlag) == 0) return "it has extra data this program does not know";
            if (bm.GranularityBits < Qcow2Bitmap.MinGranularityBits || bm.GranularityBits > Qcow2Bitmap.MaxGranularityBits)
                return $"its granularity bits {bm.GranularityBits} are outside 9..31";
            long dataBytes = Qcow2Bitmap.DataBytesFor(Length, bm.GranularityBits);
            if (dataBytes > Qcow2Bitmap.MaxDataBytes) return $"its data takes {dataBytes} bytes, above QEMU's limit of {Qcow2Bitmap.MaxDataBytes}";
            long tableSize = (dataBytes + ClusterSize - 1) / ClusterSize;
            if (!bm.InUse && tableSize != bm.TableSize) return $"its table has {bm.TableSize} entries, the disk size needs {tableSize}";
            return null;
        }

        /// <summary>Reads a bitmap's table and data clusters into memory, validating every entry.</summary>
        private void LoadBitmapData(Qcow2Bitmap bm)
        {
            if (bm.IsLoaded) return;
            var table = ReadBitmapTable(bm);
            int cs = ClusterSize;
            var chunks = new byte[table.Length][];
            for (int i = 0; i < table.Length; i++)
            {
                long host = (long)(table[i] & BitmapTableOffsetMask);
                if (host == 0)
                {
                    if ((table[i] & BitmapTableAllOnes) != 0)
                    {
                        chunks[i] = new byte[cs];
                        for (int j = 0; j < cs; j++) chunks[i][j] = 0xFF;
                    }
                    continue;
                }
                chunks[i] = new byte[cs];
                _file.ReadExactly(host, chunks[i], 0, cs, $"data of bitmap '{bm.Name}'");
            }
            bm.DiskSize = Length;
            bm.ChunkBytes = cs;
            bm.Chunks = chunks;
        }

        /// <summary>A bitmap's table, with each entry checked against the spec and the file.</summary>
        private ulong[] ReadBitmapTable(Qcow2Bitmap bm)
        {
            var table = ReadU64Table(bm.TableOffset, (int)bm.TableSize, $"table of bitmap '{bm.Name}'");
            for (int i = 0; i < table.Length; i++)
            {
                ulong e = table[i];
                long host = (long)(e & BitmapTableOffsetMask);
                if ((e & BitmapTableReservedMask) != 0 || (host != 0 && (e & BitmapTableAllOnes) != 0))
                    throw QcowException.Corrupt(Path, $"Entry {i} of the table of bitmap '{bm.Name}' (0x{e:X16}) has reserved bits set");
                if (host != 0 && (host % ClusterSize != 0 || host > _file.Length - ClusterSize))
                    throw QcowException.Corrupt(Path, $"Entry {i} of the table of bitmap '{bm.Name}' points to 0x{host:X}, not a cluster inside the file");
            }
            return table;
        }

        /// <summary>
        /// First change of the session: load the bitmaps that record writes and store the directory
        /// with them marked in use, before anything else is written. An enabled bitmap that cannot be
        /// kept exact (unusable, damaged data) is left marked in use: stale, never wrong. A directory
        /// that cannot be read at all clears the autoclear bit, the spec's way to drop every bitmap.
        /// </summary>
        private void BeginBitmapTracking()
        {
            _bitmapTrackingStarted = true;
            if (!HasConsistentBitmapExtension || Header.BitmapCount == 0) return;
            List<Qcow2Bitmap> bitmaps;
            try
            {
                bitmaps = LoadedBitmaps();
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt)
            {
                _bitmaps = new List<Qcow2Bitmap>();
                Header.AutoclearFeatures &= ~(ulong)Qcow2AutoclearFeatures.Bitmaps;
                WriteHeader();
                SyncFile();
                return;
            }
            bool any = false;
            foreach (var bm in bitmaps.Where(b => b.Enabled && !b.InUse))
            {
                any = true;
                if (bm.Unusable == null)
                {
                    try
                    {
                        LoadBitmapData(bm);
                        bm.Tracking = true;
                        continue;
                    }
                    catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt)
                    {
                        bm.Unusable = e.Message;
                    }
                }
                bm.InUse = true;
            }
            if (any) StoreBitmaps(closing: false);
        }

        /// <summary>Every write, zeroing or revert marks its range in the bitmaps this session keeps.</summary>
        private void MarkBitmapsDirty(long offset, long length)
        {
            if (_bitmaps == null) return;
            foreach (var bm in _bitmaps)
                if (bm.Tracking) bm.SetRange(offset, length);
        }

        /// <summary>The disk changed size: the bitmaps follow it (QEMU's qcow2_co_truncate keeps persistent bitmaps, resized).</summary>
        private void ResizeBitmaps(long newSize)
        {
            if (_bitmaps == null) return;
            foreach (var bm in _bitmaps.Where(b => !b.InUse && b.Unusable == null))
            {
                LoadBitmapData(bm);
                bm.Resize(newSize);
                _bitmapsChanged = true;
            }
        }

        /// <summary>Clean close: store what changed and clear the in-use marks.</summary>
        private void StoreBitmapsOnClose()
        {
            if (_bitmaps == null) return;
            if (_bitmapsChanged || _bitmaps.Any(b => b.Tracking || b.Modified)) StoreBitmaps(closing: true);
        }

        private static int EntryLength(Qcow2Bitmap bm) =>
            (BmeFixedLength + bm.ExtraData.Length + Encoding.UTF8.GetByteCount(bm.Name) + 7) & ~7;

        /// <summary>Writes changed bitmaps and a new directory, then switches the header to it (crash-safe order).</summary>
        private void StoreBitmaps(bool closing)
        {
            FlushMetadata();
            SyncFile();
            var frees = new List<(long Offset, long Bytes)>();
            int cs = ClusterSize;
            foreach (var bm in _bitmaps.Where(b => b.IsLoaded && b.Modified))
            {
                if (bm.TableOffset != 0) CollectBitmapClusters(bm, frees);
                var table = new ulong[bm.Chunks.Length];
                for (int i = 0; i < table.Length; i++)
                {
                    var chunk = bm.Chunks[i];
                    if (chunk == null || Array.TrueForAll(chunk, b => b == 0)) continue;
                    long host = AllocateClusters(1);
                    _file.WriteAt(host, chunk, 0, cs);
                    table[i] = (ulong)host;
                }
                long tableOffset = table.Length > 0 ? AllocateClusters(ClustersFor(table.Length * 8L)) : 0;
                if (table.Length > 0)
                {
                    var bytes = new byte[table.Length * 8];
                    for (int i = 0; i < table.Length; i++) BigEndian.Put64(bytes, i * 8, table[i]);
                    _file.WriteAt(tableOffset, bytes, 0, bytes.Length);
                }
                bm.TableOffset = tableOffset;
                bm.TableSize = (uint)table.Length;
                bm.Modified = false;
            }
            foreach (var bm in _removedBitmaps) CollectBitmapClusters(bm, frees);
            _removedBitmaps.Clear();

            var directory = SerializeBitmapDirectory(closing);
            long directoryOffset = directory.Length > 0 ? AllocateClusters(ClustersFor(directory.Length)) : 0;
            if (directory.Length > 0) _file.WriteAt(directoryOffset, directory, 0, directory.Length);
            FlushMetadata();
            SyncFile();

            // The switch: one header write.
            if (HasConsistentBitmapExtension && Header.BitmapDirectorySize > 0)
                frees.Add(((long)Header.BitmapDirectoryOffset, (long)Header.BitmapDirectorySize));
            Header.Extensions.RemoveAll(e => e.Type == Qcow2HeaderExtension.Bitmaps);
            if (_bitmaps.Count > 0)
            {
                var ext = new byte[Qcow2HeaderLayout.BitmapsExtensionLength];
                BigEndian.Put32(ext, Qcow2HeaderLayout.BitmapsCount, (uint)_bitmaps.Count);
                BigEndian.Put64(ext, Qcow2HeaderLayout.BitmapsDirectorySize, (ulong)directory.Length);
                BigEndian.Put64(ext, Qcow2HeaderLayout.BitmapsDirectoryOffset, (ulong)directoryOffset);
                Header.Extensions.Add(new Qcow2HeaderExtension { Type = Qcow2HeaderExtension.Bitmaps, Data = ext });
                Header.AutoclearFeatures |= (ulong)Qcow2AutoclearFeatures.Bitmaps;
            }
            else Header.AutoclearFeatures &= ~(ulong)Qcow2AutoclearFeatures.Bitmaps;
            Header.BitmapCount = (uint)_bitmaps.Count;
            Header.BitmapDirectorySize = (ulong)directory.Length;
            Header.BitmapDirectoryOffset = (ulong)directoryOffset;
            WriteHeader();
            SyncFile();

            foreach (var f in frees) FreeClustersLater(f.Offset, f.Bytes);
            FlushMetadata();
            SyncFile();
            _bitmapsChanged = false;
        }

        /// <summary>The clusters a stored bitmap's table and data use (to be freed once nothing durable names them).</summary>
        private void CollectBitmapClusters(Qcow2Bitmap bm, List<(long, long)> frees)
        {
            if (bm.TableOffset == 0 || bm.TableSize == 0) return;
            ulong[] table;
            try
            {
                table = ReadBitmapTable(bm);
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt)
            {
                return;  // a damaged table: its clusters are leaked rather than freed on a guess
            }
            foreach (var e in table)
            {
                long host = (long)(e & BitmapTableOffsetMask);
                if (host != 0) frees.Add((host, ClusterSize));
            }
            frees.Add((bm.TableOffset, bm.TableSize * 8L));
        }

        private byte[] SerializeBitmapDirectory(bool closing)
        {
            int size = _bitmaps.Sum(EntryLength);
            var dir = new byte[size];
            int pos = 0;
            foreach (var bm in _bitmaps)
            {
                var name = Encoding.UTF8.GetBytes(bm.Name);
                uint flags = bm.Flags;
                if (bm.InUse || (bm.Tracking && !closing)) flags |= Qcow2Bitmap.InUseFlag;
                BigEndian.Put64(dir, pos + BmeTableOffset, (ulong)bm.TableOffset);
                BigEndian.Put32(dir, pos + BmeTableSize, bm.TableSize);
                BigEndian.Put32(dir, pos + BmeFlags, flags);
                dir[pos + BmeType] = bm.Type;
                dir[pos + BmeGranularityBits] = (byte)bm.GranularityBits;
                BigEndian.Put16(dir, pos + BmeNameSize, (ushort)name.Length);
                BigEndian.Put32(dir, pos + BmeExtraDataSize, (uint)bm.ExtraData.Length);
                Array.Copy(bm.ExtraData, 0, dir, pos + BmeFixedLength, bm.ExtraData.Length);
                Array.Copy(name, 0, dir, pos + BmeFixedLength + bm.ExtraData.Length, name.Length);
                pos += EntryLength(bm);
            }
            return dir;
        }
    }
}
