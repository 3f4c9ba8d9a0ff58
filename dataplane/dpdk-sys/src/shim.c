/* See shim.h. Compiled by build.rs with the raw `pkg-config --cflags libdpdk`. */
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_thash.h>
#include "shim.h"

uint16_t wharf_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t wharf_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *wharf_rte_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int wharf_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void wharf_rte_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

uint16_t wharf_rte_pktmbuf_data_room_size(struct rte_mempool *mp)
{
	return rte_pktmbuf_data_room_size(mp);
}

uint16_t wharf_rte_pktmbuf_priv_size(struct rte_mempool *mp)
{
	return rte_pktmbuf_priv_size(mp);
}

void *wharf_rte_pktmbuf_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

int wharf_rte_errno(void)
{
	return rte_errno;
}

unsigned int wharf_rte_lcore_id(void)
{
	return rte_lcore_id();
}

int wharf_rte_mempool_full(const struct rte_mempool *mp)
{
	return rte_mempool_full(mp);
}

unsigned int wharf_rte_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

uint32_t wharf_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key)
{
	return rte_softrss(input_tuple, input_len, rss_key);
}
