using System;
using System.Collections.Generic;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// ext2, ext3 and ext4: the superblock, the group descriptors (64-bit or not), and the block
    /// bitmaps of each group. Groups marked BLOCK_UNINIT have no bitmap on disk; their used blocks
    /// are computed as e2fsprogs does (superblock backup, descriptor and reserved blocks, and any
    /// group's bitmaps and inode table placed there by flex_bg). Every group's free count computed
    /// from the map must equal its descriptor's counter, or nothing is called free.
    /// </summary>
    public sealed class ExtFileSystem : GuestFileSystem
    {
        private const int SuperblockOffset = 1024;
        private const int SuperblockSize = 1024;
        private const ushort Magic = 0xEF53;

        // Superblock fields (offsets inside the superblock).
        private const int BlocksCountLo = 0x04;
        private const int ReservedBlocksLo = 0x08;
        private const int FreeBlocksLo = 0x0C;
        private const int FirstDataBlock = 0x14;
        private const int LogBlockSize = 0x18;
        private const int BlocksPerGroup = 0x20;
        private const int InodesPerGroup = 0x28;
        private const int MagicField = 0x38;
        private const int StateField = 0x3A;
        private const int RevLevel = 0x4C;
        private const int InodeSizeField = 0x58;
        private const int FeatureCompat = 0x5C;
        private const int FeatureIncompat = 0x60;
        private const int FeatureRoCompat = 0x64;
        private const int UuidField = 0x68;
        private const int VolumeName = 0x78;
        private const int ReservedGdtBlocks = 0xCE;
        private const int DescSizeField = 0xFE;
        private const int BlocksCountHi = 0x150;
        private const int ReservedBlocksHi = 0x154;
        private const int FreeBlocksHi = 0x158;
        private const int BackupBgs = 0x24C;

        // Group descriptor fields.
        private const int BgBlockBitmapLo = 0x00;
        private const int BgInodeBitmapLo = 0x04;
        private const int BgInodeTableLo = 0x08;
        private const int BgFreeBlocksLo = 0x0C;
        private const int BgFlags = 0x12;
        private const int BgBlockBitmapHi = 0x20;
        private const int BgInodeBitmapHi = 0x24;
        private const int BgInodeTableHi = 0x28;
        private const int BgFreeBlocksHi = 0x2C;
        private const ushort BgBlockUninit = 0x2;

        private const ushort StateValid = 0x1;
        private const ushort StateErrors = 0x2;

        private const uint CompatHasJournal = 0x4;
        private const uint CompatSparseSuper2 = 0x200;
        private const uint IncompatFiletype = 0x2;
        private const uint IncompatRecover = 0x4;
        private const uint IncompatJournalDev = 0x8;
        private const uint IncompatMetaBg = 0x10;
        private const uint Incompat64Bit = 0x80;
        /// <summary>Incompatible features that do not change what the block bitmaps mean.</summary>
        private const uint IncompatUnderstood = IncompatFiletype | 0x40 /*extents*/ | Incompat64Bit | 0x200 /*flex_bg*/
            | 0x400 /*ea_inode*/ | 0x1000 /*dirdata*/ | 0x2000 /*csum_seed*/ | 0x4000 /*largedir*/ | 0x8000 /*inline_data*/
            | 0x10000 /*encrypt*/ | 0x20000 /*casefold*/;
        private const uint RoCompatSparseSuper = 0x1;
        private const uint RoCompatBigalloc = 0x200;
        /// <summary>Read-only features that do not change what the block bitmaps mean (all but has_snapshot and bigalloc).</summary>
        private const uint RoCompatUnderstood = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x400 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000;

        private readonly byte[] _sb;
        private readonly long _blocks;
        private readonly int _blockSize;
        private readonly long _firstDataBlock;
        private readonly long _blocksPerGroup;
        private readonly long _groups;
        private readonly int _descSize;
        private string _refusal;

        private ExtFileSystem(VirtualDisk disk, long offset, long length, byte[] sb) : base(disk, offset, length)
        {
            _sb = sb;
            uint incompat = U32(sb, FeatureIncompat), roCompat = U32(sb, FeatureRoCompat), compat = U32(sb, FeatureCompat);
            _blockSize = 1024 << (int)Math.Min(U32(sb, LogBlockSize), 6);
            bool is64 = (incompat & Incompat64Bit) != 0;
            _blocks = (long)U32(sb, BlocksCountLo) | (is64 ? (long)U32(sb, BlocksCountHi) << 32 : 0);
            long reserved = (long)U32(sb, ReservedBlocksLo) | (is64 ? (long)U32(sb, ReservedBlocksHi) << 32 : 0);
            long free = (long)U32(sb, FreeBlocksLo) | (is64 ? (long)U32(sb, FreeBlocksHi) << 32 : 0);
            _firstDataBlock = U32(sb, FirstDataBlock);
            _blocksPerGroup = U32(sb, BlocksPerGroup);
            _descSize = is64 ? U16(sb, DescSizeField) : 32;
            _groups = _blocksPerGroup == 0 || _blocks <= _firstDataBlock ? 0 : (_blocks - _firstDataBlock + _blocksPerGroup - 1) / _blocksPerGroup;

            bool ext4 = (incompat & ~(IncompatFiletype | IncompatRecover | IncompatMetaBg)) != 0 || (roCompat & ~(RoCompatSparseSuper | 0x2u | 0x4u)) != 0;
            _type = ext4 ? "ext4" : (compat & CompatHasJournal) != 0 ? "ext3" : "ext2";
            Label = Text(sb, VolumeName, 16);
            Uuid = UuidText(sb, UuidField);
            BlockSize = _blockSize;
            Size = _blocks * _blockSize;
            Used = Math.Max(0, _blocks - free) * _blockSize;
            Available = Math.Max(0, free - reserved) * _blockSize;

            ushort state = U16(sb, StateField);
            if ((incompat & IncompatJournalDev) != 0) _refusal = "it is an external journal device";
            else if ((incompat & IncompatRecover) != 0) _refusal = "its journal needs recovery (needs_recovery): mount it or run e2fsck first";
            else if ((state & StateErrors) != 0) _refusal = "it is marked as having errors: run e2fsck first";
            else if ((state & StateValid) == 0) _refusal = "it was not cleanly unmounted: run e2fsck first";
            else if ((incompat & IncompatMetaBg) != 0) _refusal = "it uses meta_bg, whose descriptor layout QcowPS does not read";
            else if ((roCompat & RoCompatBigalloc) != 0) _refusal = "it uses bigalloc, whose cluster bitmaps QcowPS does not read";
            else if ((incompat & ~IncompatUnderstood & ~IncompatRecover) != 0) _refusal = $"it has incompatible features {incompat & ~IncompatUnderstood:x} QcowPS does not know";
            else if ((roCompat & ~RoCompatUnderstood) != 0) _refusal = $"it has read-only features {roCompat & ~RoCompatUnderstood:x} QcowPS does not know";
            else if (U32(sb, RevLevel) > 1) _refusal = $"its revision {U32(sb, RevLevel)} is unknown";
            else if (_blocksPerGroup == 0 || _blocksPerGroup > 8L * _blockSize || _blocksPerGroup % 8 != 0) _refusal = $"{_blocksPerGroup} blocks per group do not fit one bitmap block";
            else if (_blocks <= _firstDataBlock || _blocks > length / _blockSize) _refusal = $"its {_blocks} blocks of {_blockSize} bytes do not fit its volume of {length} bytes";
            else if (is64 && (_descSize < 64 || _descSize > 1024 || (_descSize & (_descSize - 1)) != 0)) _refusal = $"its group descriptor size {_descSize} is invalid";
        }

        private readonly string _type;
        public override string Type => _type;
        public override string RefusalReason => _refusal;

        /// <summary>The ext file system on the volume, or null when there is none.</summary>
        public static ExtFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < SuperblockOffset + SuperblockSize) return null;
            var sb = new byte[SuperblockSize];
            disk.Read(offset + SuperblockOffset, sb, 0, SuperblockSize);
            return U16(sb, MagicField) == Magic ? new ExtFileSystem(disk, offset, length, sb) : null;
        }

        public override IEnumerable<FreeRun> FreeRuns()
        {
            if (_refusal != null) throw new QcowException(QcowErrorKind.Unsupported, Disk.Path, $"The {Type} file system at offset {Offset} is left untouched: {_refusal}");
            var descriptors = ReadDescriptors();
            var metadata = MetadataBlocksByGroup(descriptors);
            var bitmap = new byte[_blockSize];
            for (long g = 0; g < _groups; g++)
            {
                int d = (int)(g * _descSize);
                long groupStart = _firstDataBlock + g * _blocksPerGroup;
                long groupBlocks = Math.Min(_blocksPerGroup, _blocks - groupStart);
                long expectedFree = U16(descriptors, d + BgFreeBlocksLo) | (_descSize >= 64 ? (long)U16(descriptors, d + BgFreeBlocksHi) << 16 : 0);
                if ((U16(descriptors, d + BgFlags) & BgBlockUninit) != 0)
                {
                    Array.Clear(bitmap, 0, bitmap.Length);
                    if (metadata.TryGetValue(g, out var used))
                        foreach (long b in used) if (b - groupStart < groupBlocks) bitmap[(b - groupStart) >> 3] |= (byte)(1 << (int)((b - groupStart) & 7));
                }
                else
                {
                    long at = Block(descriptors, d, BgBlockBitmapLo, BgBlockBitmapHi);
                    if (at < _firstDataBlock || at >= _blocks) throw Corrupt($"the block bitmap of group {g} is at block {at}, outside the file system");
                    ReadVolume(at * _blockSize, bitmap, 0, _blockSize);
                }
                long free = CountClearBits(bitmap, groupBlocks);
                if (free != expectedFree)
                    throw Corrupt($"group {g} has {free} free blocks in its bitmap but its descriptor counts {expectedFree}: run e2fsck first");
                foreach (var run in ClearBitRuns(bitmap, groupBlocks, groupStart))
                    yield return new FreeRun(run.first * _blockSize, run.count * _blockSize);
            }
        }

        private byte[] ReadDescriptors()
        {
            long gdtBlock = _firstDataBlock + 1;
            long bytes = _groups * _descSize;
            if (bytes > int.MaxValue || gdtBlock * _blockSize + bytes > Length) throw Corrupt($"its {_groups} group descriptors do not fit the volume");
            return ReadVolume(gdtBlock * _blockSize, (int)bytes);
        }

        private long Block(byte[] descriptors, int d, int lo, int hi) =>
            (long)U32(descriptors, d + lo) | (_descSize >= 64 ? (long)U32(descriptors, d + hi) << 32 : 0);

        /// <summary>
        /// The blocks in use in groups that have no bitmap on disk (BLOCK_UNINIT): the superblock backup,
        /// descriptor and reserved descriptor blocks where the group has a backup, and every group's
        /// bitmaps and inode table that flex_bg placed there.
        /// </summary>
        private Dictionary<long, List<long>> MetadataBlocksByGroup(byte[] descriptors)
        {
            var result = new Dictionary<long, List<long>>();
            var uninit = new HashSet<long>();
            for (long g = 0; g < _groups; g++)
                if ((U16(descriptors, (int)(g * _descSize) + BgFlags) & BgBlockUninit) != 0) uninit.Add(g);
            if (uninit.Count == 0) return result;
            void Mark(long block, long count)
            {
                for (long b = block; b < block + count && b < _blocks; b++)
                {
                    if (b < _firstDataBlock) continue;
                    long g = (b - _firstDataBlock) / _blocksPerGroup;
                    if (!uninit.Contains(g)) continue;
                    if (!result.TryGetValue(g, out var list)) result[g] = list = new List<long>();
                    list.Add(b);
                }
            }
            long gdtBlocks = (_groups * _descSize + _blockSize - 1) / _blockSize;
            long reservedGdt = U16(_sb, ReservedGdtBlocks);
            long inodeTableBlocks = ((long)U32(_sb, InodesPerGroup) * InodeSize() + _blockSize - 1) / _blockSize;
            for (long g = 0; g < _groups; g++)
            {
                if (uninit.Contains(g) && HasSuperblockBackup(g)) Mark(_firstDataBlock + g * _blocksPerGroup, 1 + gdtBlocks + reservedGdt);
                int d = (int)(g * _descSize);
                Mark(Block(descriptors, d, BgBlockBitmapLo, BgBlockBitmapHi), 1);
                Mark(Block(descriptors, d, BgInodeBitmapLo, BgInodeBitmapHi), 1);
                Mark(Block(descriptors, d, BgInodeTableLo, BgInodeTableHi), inodeTableBlocks);
            }
            return result;
        }

        private int InodeSize() => U32(_sb, RevLevel) == 0 ? 128 : U16(_sb, InodeSizeField);

        private bool HasSuperblockBackup(long g)
        {
            if (g == 0) return true;
            if ((U32(_sb, FeatureCompat) & CompatSparseSuper2) != 0) return g == U32(_sb, BackupBgs) || g == U32(_sb, BackupBgs + 4);
            if ((U32(_sb, FeatureRoCompat) & RoCompatSparseSuper) == 0) return true;
            return g == 1 || IsPowerOf(g, 3) || IsPowerOf(g, 5) || IsPowerOf(g, 7);
        }

        private static bool IsPowerOf(long g, long b)
        {
            while (g > 1 && g % b == 0) g /= b;
            return g == 1;
        }

        private QcowException Corrupt(string what) =>
            new QcowException(QcowErrorKind.Corrupt, Disk.Path, $"The {Type} file system at offset {Offset} is left untouched: {what}");
    }
}
