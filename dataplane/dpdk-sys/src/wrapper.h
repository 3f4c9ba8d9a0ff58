/* The DPDK API surface wharf binds (bindgen input). Compiled with `pkg-config --cflags libdpdk`. */
#include <stddef.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_dev.h>
#include <rte_version.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>
#include "shim.h"

/* Where the fields wharf's fast path reads and writes sit in struct rte_mbuf, computed by the compiler from the
 * installed headers (bindgen evaluates the enum), so Rust code needs no version-specific field paths. */
enum wharf_mbuf_layout {
	WHARF_MBUF_SIZE = sizeof(struct rte_mbuf),
	WHARF_MBUF_BUF_ADDR = offsetof(struct rte_mbuf, buf_addr),
	WHARF_MBUF_DATA_OFF = offsetof(struct rte_mbuf, data_off),
	WHARF_MBUF_REFCNT = offsetof(struct rte_mbuf, refcnt),
	WHARF_MBUF_NB_SEGS = offsetof(struct rte_mbuf, nb_segs),
	WHARF_MBUF_PORT = offsetof(struct rte_mbuf, port),
	WHARF_MBUF_OL_FLAGS = offsetof(struct rte_mbuf, ol_flags),
	WHARF_MBUF_PACKET_TYPE = offsetof(struct rte_mbuf, packet_type),
	WHARF_MBUF_PKT_LEN = offsetof(struct rte_mbuf, pkt_len),
	WHARF_MBUF_DATA_LEN = offsetof(struct rte_mbuf, data_len),
	WHARF_MBUF_VLAN_TCI = offsetof(struct rte_mbuf, vlan_tci),
	WHARF_MBUF_HASH = offsetof(struct rte_mbuf, hash),
	WHARF_MBUF_BUF_LEN = offsetof(struct rte_mbuf, buf_len),
	WHARF_MBUF_POOL = offsetof(struct rte_mbuf, pool),
	WHARF_MBUF_NEXT = offsetof(struct rte_mbuf, next),
	WHARF_MBUF_PRIV_SIZE = offsetof(struct rte_mbuf, priv_size),
};

/* Version of the headers bindgen saw. */
enum wharf_rte_version {
	WHARF_RTE_VER_YEAR = RTE_VER_YEAR,
	WHARF_RTE_VER_MONTH = RTE_VER_MONTH,
	WHARF_RTE_VER_MINOR = RTE_VER_MINOR,
	WHARF_RTE_PKTMBUF_HEADROOM = RTE_PKTMBUF_HEADROOM,
	WHARF_RTE_MAX_LCORE = RTE_MAX_LCORE,
	WHARF_RTE_MEMPOOL_CACHE_MAX_SIZE = RTE_MEMPOOL_CACHE_MAX_SIZE,
};

/* RSS hash types (RTE_BIT64-based macros, which bindgen cannot evaluate; all below bit 32). */
enum wharf_rss {
	WHARF_RSS_IP = RTE_ETH_RSS_IP,
	WHARF_RSS_UDP = RTE_ETH_RSS_UDP,
	WHARF_RSS_TCP = RTE_ETH_RSS_TCP,
	WHARF_RSS_IPV4 = RTE_ETH_RSS_IPV4,
	WHARF_RSS_NONFRAG_IPV4_TCP = RTE_ETH_RSS_NONFRAG_IPV4_TCP,
	WHARF_RSS_NONFRAG_IPV4_UDP = RTE_ETH_RSS_NONFRAG_IPV4_UDP,
};
