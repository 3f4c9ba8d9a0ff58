/* Out-of-line wrappers for DPDK's `static inline` functions and macros, which bindgen cannot bind. Each is one
 * call into the inline body; the fast-path ones (rx/tx burst) are called once per burst. */
#ifndef WHARF_DPDK_SHIM_H
#define WHARF_DPDK_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

uint16_t wharf_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t wharf_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *wharf_rte_pktmbuf_alloc(struct rte_mempool *mp);
int wharf_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
void wharf_rte_pktmbuf_free(struct rte_mbuf *m);
uint16_t wharf_rte_pktmbuf_data_room_size(struct rte_mempool *mp);
uint16_t wharf_rte_pktmbuf_priv_size(struct rte_mempool *mp);
void *wharf_rte_pktmbuf_mtod(struct rte_mbuf *m);
int wharf_rte_errno(void);
unsigned int wharf_rte_lcore_id(void);
int wharf_rte_mempool_full(const struct rte_mempool *mp);
unsigned int wharf_rte_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n);
uint32_t wharf_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key);

#endif
