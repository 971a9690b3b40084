import { statfsSync } from 'node:fs';
import { arch, availableParallelism, cpus, platform, release, totalmem } from 'node:os';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  v8: string;
  os: string;
  /** File system of the scratch directory (where the WAL is written). */
  scratchFs: string;
}

// statfs(2) f_type magic numbers of the usual Linux file systems.
const kFsTypes: Record<number, string> = {
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x794c7630: 'overlayfs',
  0x2fc12fc1: 'zfs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
};

export function machineInfo(scratch: string): MachineInfo {
  let scratchFs = 'unknown';
  try {
    const type = statfsSync(scratch).type;
    scratchFs = kFsTypes[type] ?? `0x${type.toString(16)}`;
  } catch {
    // statfs is not available everywhere
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    v8: process.versions.v8,
    os: `${platform()} ${release()} ${arch()}`,
    scratchFs,
  };
}
