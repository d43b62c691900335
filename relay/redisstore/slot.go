package redisstore

import (
	"slices"

	"github.com/eventrelay/eventrelay/relay"
)

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// Slot returns the Redis Cluster hash slot of partition p's keys: CRC16 (XMODEM) of the hash
// tag "<source>:<index>", modulo 16384. The stream, its dedupe markers and its dead letters
// share it.
func Slot(p relay.Partition) int {
	tag := hashTag(p)
	return int(crc16(tag[1:len(tag)-1]) % clusterSlots)
}

// groupBySlot splits sorted partitions into groups of one slot each, in order of first
// appearance.
func groupBySlot(parts []relay.Partition) [][]relay.Partition {
	var groups [][]relay.Partition
	index := make(map[int]int)
	for _, p := range parts {
		slot := Slot(p)
		i, ok := index[slot]
		if !ok {
			i = len(groups)
			index[slot] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	return slices.Clip(groups)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
