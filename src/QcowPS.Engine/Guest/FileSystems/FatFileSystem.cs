using System;
using System.Collections.Generic;
using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// FAT12, FAT16 and FAT32 (blkid: vfat): the BIOS parameter block and the first FAT. A cluster is
    /// free when its FAT entry is 0. Every FAT copy must be identical and the volume clean (neither
    /// the FAT's clean-shutdown bit nor the boot sector's dirty flag says otherwise).
    /// </summary>
    public sealed class FatFileSystem : GuestFileSystem
    {
        private const int BytesPerSectorField = 11;
        private const int SectorsPerClusterField = 13;
        private const int ReservedSectorsField = 14;
        private const int FatCountField = 16;
        private const int RootEntriesField = 17;
        private const int TotalSectors16Field = 19;
        private const int FatSize16Field = 22;
        private const int TotalSectors32Field = 32;
        private const int FatSize32Field = 36;
        private const int Fat16StateField = 37;
        private const int Fat16VolumeIdField = 39;
        private const int Fat16LabelField = 43;
        private const int Fat32StateField = 65;
        private const int Fat32VolumeIdField = 67;
        private const int Fat32LabelField = 71;
        private const byte StateDirty = 0x01;
        private const int DirectoryEntrySize = 32;
        private const int MaxFat12Clusters = 4084;
        private const int MaxFat16Clusters = 65524;
        /// <summary>The largest FAT we read at once (FAT32 tops out at 2^28 entries = 1 GiB; real ones are far smaller).</summary>
        private const long MaxFatBytes = 256L << 20;

        private readonly int _bits;
        private readonly long _clusterBytes;
        private readonly long _fatOffset;
        private readonly long _fatBytes;
        private readonly int _fatCount;
        private readonly long _dataOffset;
        private readonly long _clusters;
        private readonly bool _bootDirty;
        private string _refusal;

        private FatFileSystem(VirtualDisk disk, long offset, long length, byte[] boot) : base(disk, offset, length)
        {
            int bytesPerSector = U16(boot, BytesPerSectorField);
            int perCluster = boot[SectorsPerClusterField];
            long reserved = U16(boot, ReservedSectorsField);
            _fatCount = boot[FatCountField];
            long rootEntries = U16(boot, RootEntriesField);
            long totalSectors = U16(boot, TotalSectors16Field) != 0 ? U16(boot, TotalSectors16Field) : U32(boot, TotalSectors32Field);
            long fatSectors = U16(boot, FatSize16Field) != 0 ? U16(boot, FatSize16Field) : U32(boot, FatSize32Field);
            long rootSectors = (rootEntries * DirectoryEntrySize + bytesPerSector - 1) / bytesPerSector;
            long dataSectors = totalSectors - reserved - _fatCount * fatSectors - rootSectors;
            _clusters = Math.Max(0, dataSectors / perCluster);
            _bits = _clusters <= MaxFat12Clusters ? 12 : _clusters <= MaxFat16Clusters ? 16 : 32;
            _clusterBytes = (long)perCluster * bytesPerSector;
            _fatOffset = reserved * bytesPerSector;
            _fatBytes = fatSectors * bytesPerSector;
            _dataOffset = (reserved + _fatCount * fatSectors + rootSectors) * bytesPerSector;
            bool fat32 = _bits == 32;
            _bootDirty = (boot[fat32 ? Fat32StateField : Fat16StateField] & StateDirty) != 0;
            bool extendedBpb = boot[fat32 ? 66 : 38] == 0x29;
            if (extendedBpb)
            {
                Label = Text(boot, fat32 ? Fat32LabelField : Fat16LabelField, 11);
                if (Label == "NO NAME") Label = null;
                uint id = U32(boot, fat32 ? Fat32VolumeIdField : Fat16VolumeIdField);
                Uuid = $"{id >> 16:X4}-{id & 0xFFFF:X4}";
            }
            BlockSize = (int)_clusterBytes;
            Size = _clusters * _clusterBytes;

            if (totalSectors * bytesPerSector > length) _refusal = $"its {totalSectors} sectors do not fit its volume of {length} bytes";
            else if (_fatCount < 1 || _fatCount > 2) _refusal = $"it has {_fatCount} FATs";
            else if (dataSectors <= 0 || _clusters == 0) _refusal = "it has no data clusters";
            else if (_fatBytes * 8 < (_clusters + 2) * _bits) _refusal = $"its FAT of {_fatBytes} bytes cannot hold {_clusters} clusters";
            else if (_fatBytes > MaxFatBytes) _refusal = $"its FAT of {_fatBytes} bytes is larger than QcowPS reads";
            else if (fat32 && fatSectors == 0) _refusal = "its FAT32 FAT size is 0";
            else if (_bootDirty) _refusal = "its boot sector marks it dirty (not cleanly unmounted): run fsck.fat first";
        }

        public override string Type => "vfat";
        public override string RefusalReason => _refusal ?? FatStateProblem();

        /// <summary>The FAT file system on the volume, or null when its boot sector is not a FAT one.</summary>
        public static FatFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var boot = new byte[512];
            disk.Read(offset, boot, 0, 512);
            if (boot[510] != 0x55 || boot[511] != 0xAA || (boot[0] != 0xEB && boot[0] != 0xE9)) return null;
            int bps = U16(boot, BytesPerSectorField), spc = boot[SectorsPerClusterField];
            if (bps < 512 || bps > 4096 || (bps & (bps - 1)) != 0 || spc == 0 || (spc & (spc - 1)) != 0) return null;
            if (U16(boot, ReservedSectorsField) == 0 || boot[FatCountField] == 0) return null;
            if (Encoding.ASCII.GetString(boot, 3, 8) == "NTFS    ") return null;
            var fs = new FatFileSystem(disk, offset, length, boot);
            if (fs._refusal == null) fs.ComputeUsage();
            return fs;
        }

        private byte[] _fat;
        private string _fatProblem;

        private byte[] Fat()
        {
            if (_fat != null) return _fat;
            _fat = ReadVolume(_fatOffset, (int)_fatBytes);
            for (int copy = 1; copy < _fatCount && _fatProblem == null; copy++)
            {
                var other = ReadVolume(_fatOffset + copy * _fatBytes, (int)_fatBytes);
                for (long c = 0; c < _clusters + 2; c++)
                    if (Entry(other, c) != Entry(_fat, c)) { _fatProblem = $"FAT copy {copy + 1} differs from the first at cluster {c}: run fsck.fat first"; break; }
            }
            // The clean-shutdown bit of FAT entry 1 (FAT16 bit 15, FAT32 bit 27); FAT12 has none.
            if (_fatProblem == null && _bits == 16 && (Entry(_fat, 1) & 0x8000) == 0) _fatProblem = "its FAT marks it not cleanly unmounted: run fsck.fat first";
            if (_fatProblem == null && _bits == 32 && (Entry(_fat, 1) & 0x08000000) == 0) _fatProblem = "its FAT marks it not cleanly unmounted: run fsck.fat first";
            return _fat;
        }

        private string FatStateProblem()
        {
            Fat();
            return _fatProblem;
        }

        private void ComputeUsage()
        {
            var fat = Fat();
            long free = 0;
            for (long c = 2; c < _clusters + 2; c++) if (Entry(fat, c) == 0) free++;
            Available = free * _clusterBytes;
            Used = (_clusters - free) * _clusterBytes;
        }

        private uint Entry(byte[] fat, long cluster)
        {
            switch (_bits)
            {
                case 12:
                    long o = cluster * 3 / 2;
                    int v = fat[o] | (fat[o + 1] << 8);
                    return (uint)((cluster & 1) != 0 ? v >> 4 : v & 0xFFF);
                case 16: return U16(fat, (int)(cluster * 2));
                default: return U32(fat, (int)(cluster * 4)) & 0x0FFFFFFF;
            }
        }

        public override IEnumerable<FreeRun> FreeRuns()
        {
            string refusal = RefusalReason;
            if (refusal != null) throw new QcowException(QcowErrorKind.Unsupported, Disk.Path, $"The {Type} file system at offset {Offset} is left untouched: {refusal}");
            var fat = Fat();
            long c = 2;
            while (c < _clusters + 2)
            {
                if (Entry(fat, c) != 0) { c++; continue; }
                long start = c;
                while (c < _clusters + 2 && Entry(fat, c) == 0) c++;
                yield return new FreeRun(_dataOffset + (start - 2) * _clusterBytes, (c - start) * _clusterBytes);
            }
        }
    }
}
