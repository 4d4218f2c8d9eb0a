using System;
using System.Collections.Generic;
using QcowPS.Engine.Guest.FileSystems.Xfs;
using static System.Buffers.Binary.BinaryPrimitives;
using A = QcowPS.Engine.Guest.FileSystems.Xfs.XfsAgfLayout;
using B = QcowPS.Engine.Guest.FileSystems.Xfs.XfsBtreeLayout;
using S = QcowPS.Engine.Guest.FileSystems.Xfs.XfsSuperblockLayout;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// XFS (v4 and v5): usage from the superblock's counters (what xfs_db -c 'sb 0' prints), and free
    /// space from the by-block-number free-space B+tree (bnobt) of every allocation group, cross-checked
    /// against the by-size tree (cntbt) and the AGF's free-block counter. Blocks on the AG free list
    /// (AGFL) are in neither tree and are left alone. Only a file system whose internal log is provably
    /// clean (ends in an unmount record) and whose features are all known is touched. A realtime
    /// section lives on another device: only the data device's AGs are read, so it changes nothing here.
    /// </summary>
    public sealed class XfsFileSystem : GuestFileSystem
    {
        private readonly byte[] _sb;
        private readonly int _blockSize;
        private readonly int _sectorSize;
        private readonly long _dataBlocks;
        private readonly uint _agBlocks;
        private readonly uint _agCount;
        private readonly bool _v5;
        private readonly string _shapeRefusal;
        private string _refusal;
        private bool _refusalKnown;

        private XfsFileSystem(VirtualDisk disk, long offset, long length, byte[] sb) : base(disk, offset, length)
        {
            _sb = sb;
            uint blockSize = BE32(sb, S.BlockSize);
            ulong blocks = BE64(sb, S.DataBlocks), free = BE64(sb, S.FreeDataBlocks);
            Uuid = UuidText(sb, S.Uuid);
            Label = Text(sb, S.Name, S.NameLength);
            // Counters from a hostile superblock are reported only when they describe a file system that fits its volume.
            if (blockSize >= 512 && blockSize <= 65536 && blocks <= (ulong)(length / blockSize) && free <= blocks)
            {
                BlockSize = (int)blockSize;
                Size = (long)blocks * blockSize;
                Available = (long)free * blockSize;
                Used = Size - Available;
            }
            _blockSize = (int)blockSize;
            _sectorSize = BE16(sb, S.SectorSize);
            _dataBlocks = (long)Math.Min(blocks, long.MaxValue);
            _agBlocks = BE32(sb, S.AgBlocks);
            _agCount = BE32(sb, S.AgCount);
            _v5 = (BE16(sb, S.VersionNum) & S.VersionMask) == S.Version5;
            _shapeRefusal = ShapeRefusal(length);
        }

        public override string Type => "xfs";

        /// <summary>Geometry and features first, then the log (read once, on first asking).</summary>
        public override string RefusalReason
        {
            get
            {
                if (_refusalKnown) return _refusal;
                _refusal = _shapeRefusal;
                if (_refusal == null)
                {
                    try { _refusal = LogRefusal(); }
                    catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt) { _refusal = "the XFS log needs recovery: " + e.Message; }
                }
                _refusalKnown = true;
                return _refusal;
            }
        }

        public static XfsFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var sb = new byte[512];
            disk.Read(offset, sb, 0, 512);
            return BE32(sb, S.MagicField) == S.Magic ? new XfsFileSystem(disk, offset, length, sb) : null;
        }

        /// <summary>Why the superblock alone rules the file system out (or null): geometry, version, features, an unfinished mkfs.</summary>
        private string ShapeRefusal(long length)
        {
            int version = BE16(_sb, S.VersionNum) & S.VersionMask;
            if (version != S.Version4 && version != S.Version5) return $"its version {version} is not XFS v4 or v5";
            if (!IsPowerOfTwo(_blockSize) || _blockSize < 512 || _blockSize > 65536 || 1 << _sb[S.BlockLog] != _blockSize) return $"its block size {_blockSize} is invalid";
            if (!IsPowerOfTwo(_sectorSize) || _sectorSize < 512 || _sectorSize > _blockSize) return $"its sector size {_sectorSize} is invalid";
            if (_agBlocks < 2 || _agCount == 0 || _sb[S.AgBlockLog] > 31 || _agBlocks > 1u << _sb[S.AgBlockLog] || (_agBlocks - 1) >> Math.Max(0, _sb[S.AgBlockLog] - 1) == 0)
                return $"its AG size of {_agBlocks} blocks (log {_sb[S.AgBlockLog]}) is invalid";
            if (_dataBlocks <= (long)(_agCount - 1) * _agBlocks || _dataBlocks > (long)_agCount * _agBlocks)
                return $"its {_dataBlocks} blocks do not make {_agCount} AGs of {_agBlocks} blocks";
            if (_dataBlocks > length / _blockSize) return $"its {_dataBlocks} blocks of {_blockSize} bytes do not fit its volume of {length} bytes";
            if (_sb[S.InProgress] != 0) return "mkfs.xfs did not finish making it (sb_inprogress is set)";
            uint features2 = (BE16(_sb, S.VersionNum) & S.VersionMoreBits) != 0 ? BE32(_sb, S.Features2) : 0;
            if (_v5)
            {
                var sector = ReadVolume(0, _sectorSize);
                if (Crc32.Castagnoli.Compute(sector, 0, _sectorSize, S.Crc) != ReadUInt32LittleEndian(new ReadOnlySpan<byte>(sector, S.Crc, 4)))
                    return "its superblock fails its CRC check: run xfs_repair first";
                uint incompat = BE32(_sb, S.FeaturesIncompat), roCompat = BE32(_sb, S.FeaturesRoCompat), logIncompat = BE32(_sb, S.FeaturesLogIncompat);
                if ((incompat & S.IncompatNeedsRepair) != 0) return "it is marked as needing xfs_repair (needsrepair)";
                if ((incompat & ~S.IncompatUnderstood) != 0) return $"it has incompatible features {incompat & ~S.IncompatUnderstood:x} QcowPS does not know";
                if ((roCompat & ~S.RoCompatUnderstood) != 0) return $"it has read-only features {roCompat & ~S.RoCompatUnderstood:x} QcowPS does not know";
                if ((logIncompat & ~S.LogIncompatUnderstood) != 0) return $"it has log-incompatible features {logIncompat & ~S.LogIncompatUnderstood:x} QcowPS does not know";
            }
            else if ((features2 & ~S.Features2Understood) != 0) return $"it has v4 features {features2 & ~S.Features2Understood:x} QcowPS does not know";
            if (BE64(_sb, S.LogStart) == 0) return "its log is on an external device, which QcowPS cannot see to prove it clean";
            return null;
        }

        /// <summary>Where the internal log is, and whether it ends in an unmount record.</summary>
        private string LogRefusal()
        {
            ulong logStart = BE64(_sb, S.LogStart);
            int agLog = _sb[S.AgBlockLog];
            ulong ag = logStart >> agLog, agBlock = logStart & ((1UL << agLog) - 1);
            long logBlocks = BE32(_sb, S.LogBlocks);
            if (ag >= _agCount || agBlock + (ulong)logBlocks > (ulong)AgLength((uint)ag))
                return $"its log (block {logStart}, {logBlocks} blocks) does not lie inside one AG";
            long at = ((long)ag * _agBlocks + (long)agBlock) * _blockSize;
            var uuid = new byte[16];
            Array.Copy(_sb, S.Uuid, uuid, 0, 16);
            return XfsLog.WhyNotClean((pos, buffer, count) => ReadVolume(pos, buffer, 0, count), at, logBlocks * _blockSize / XfsLogLayout.BasicBlock, uuid);
        }

        public override IEnumerable<FreeRun> FreeRuns()
        {
            string refusal = RefusalReason;
            if (refusal != null) throw new QcowException(QcowErrorKind.Unsupported, Disk.Path, $"The xfs file system at offset {Offset} is left untouched: {refusal}");
            // Every AG is read and checked before the first run is handed out.
            var runs = new List<FreeRun>();
            for (uint ag = 0; ag < _agCount; ag++)
                foreach (var (start, count) in FreeExtents(ag))
                    runs.Add(new FreeRun(((long)ag * _agBlocks + start) * _blockSize, (long)count * _blockSize));
            return runs;
        }

        private long AgLength(uint ag) => Math.Min(_agBlocks, _dataBlocks - (long)ag * _agBlocks);

        /// <summary>The free extents of one AG from its bnobt, after checking them against the AGF and the cntbt.</summary>
        private List<(uint start, uint count)> FreeExtents(uint ag)
        {
            long agStart = (long)ag * _agBlocks * _blockSize;
            uint agLength = (uint)AgLength(ag);
            var agf = ReadVolume(agStart + _sectorSize, _sectorSize);
            if (BE32(agf, A.MagicField) != A.Magic) throw Corrupt($"AG {ag}'s AGF has magic {BE32(agf, A.MagicField):x8}, not XAGF");
            if (_v5)
            {
                if (Crc32.Castagnoli.Compute(agf, 0, _sectorSize, A.Crc) != ReadUInt32LittleEndian(new ReadOnlySpan<byte>(agf, A.Crc, 4)))
                    throw Corrupt($"AG {ag}'s AGF fails its CRC check");
                if (!SameBytes(agf, A.Uuid, MetadataUuid())) throw Corrupt($"AG {ag}'s AGF belongs to another file system (UUID differs)");
            }
            if (BE32(agf, A.VersionNum) != A.Version) throw Corrupt($"AG {ag}'s AGF has version {BE32(agf, A.VersionNum)}");
            if (BE32(agf, A.SeqNo) != ag) throw Corrupt($"AG {ag}'s AGF says it is AG {BE32(agf, A.SeqNo)}");
            if (BE32(agf, A.Length) != agLength) throw Corrupt($"AG {ag}'s AGF says it has {BE32(agf, A.Length)} blocks, not {agLength}");
            uint expected = BE32(agf, A.FreeBlocks);

            var tree = new XfsFreeSpaceTree(ReadAgBlockOf(agStart), _blockSize, _v5, ag, agLength, agStart / 512, MetadataUuid(), Corrupt);
            var byBlock = tree.Records("bnobt", _v5 ? B.BnoMagicV5 : B.BnoMagicV4, BE32(agf, A.BnoRoot), BE32(agf, A.BnoLevel));
            long sum = 0, end = 0;
            foreach (var (start, count) in byBlock)
            {
                if (count == 0 || start < end || (long)start + count > agLength)
                    throw Corrupt($"AG {ag}'s bnobt has extent {start}+{count} out of order, overlapping or outside the AG of {agLength} blocks");
                end = (long)start + count;
                sum += count;
            }
            if (sum != expected) throw Corrupt($"AG {ag}'s bnobt lists {sum} free blocks but its AGF counts {expected}: run xfs_repair first");

            var bySize = tree.Records("cntbt", _v5 ? B.CntMagicV5 : B.CntMagicV4, BE32(agf, A.CntRoot), BE32(agf, A.CntLevel));
            for (int i = 1; i < bySize.Count; i++)
                if (bySize[i].count < bySize[i - 1].count || (bySize[i].count == bySize[i - 1].count && bySize[i].start <= bySize[i - 1].start))
                    throw Corrupt($"AG {ag}'s cntbt is out of order at record {i}");
            var sorted = new List<(uint start, uint count)>(bySize);
            sorted.Sort((x, y) => x.start.CompareTo(y.start));
            bool same = sorted.Count == byBlock.Count;
            for (int i = 0; same && i < sorted.Count; i++) same = sorted[i] == byBlock[i];
            if (!same) throw Corrupt($"AG {ag}'s cntbt does not list the same free extents as its bnobt: run xfs_repair first");
            return byBlock;
        }

        private XfsFreeSpaceTree.BlockReader ReadAgBlockOf(long agStart) => agBlock => ReadVolume(agStart + (long)agBlock * _blockSize, _blockSize);

        /// <summary>The UUID v5 metadata is stamped with: sb_meta_uuid when the meta_uuid feature is on, else sb_uuid.</summary>
        private byte[] MetadataUuid()
        {
            var uuid = new byte[16];
            bool meta = (BE32(_sb, S.FeaturesIncompat) & S.IncompatMetaUuid) != 0;
            Array.Copy(_sb, meta ? S.MetaUuid : S.Uuid, uuid, 0, 16);
            return uuid;
        }

        private QcowException Corrupt(string what) =>
            new QcowException(QcowErrorKind.Corrupt, Disk.Path, $"The xfs file system at offset {Offset} is left untouched: {what}");

        private static bool SameBytes(byte[] b, int o, byte[] other)
        {
            for (int i = 0; i < other.Length; i++) if (b[o + i] != other[i]) return false;
            return true;
        }

        private static bool IsPowerOfTwo(long v) => v > 0 && (v & (v - 1)) == 0;
        private static ushort BE16(byte[] b, int o) => ReadUInt16BigEndian(new ReadOnlySpan<byte>(b, o, 2));
        private static uint BE32(byte[] b, int o) => ReadUInt32BigEndian(new ReadOnlySpan<byte>(b, o, 4));
        private static ulong BE64(byte[] b, int o) => ReadUInt64BigEndian(new ReadOnlySpan<byte>(b, o, 8));
    }
}
