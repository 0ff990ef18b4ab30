"""Loss over the simplex on the piecewise-linear surface through the m-connector nodes (and on the flat simplex)."""
import pandas as pd

from losslab import connectors, data, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
bs = p.evaluation["batch_size"]
ds, fm, X, pts = connectors.load_network_optima(snakemake.input.optima, p.dataset, device)
ev = data.eval_from_config(ds, {"evaluation": p.evaluation}, device)
nodes = io.load_tensors(snakemake.input.nodes, device)
res = connectors.MConnectorResult(nodes["bary"], nodes["points"], [], [], [], int(nodes["resolution"]))
query = connectors.barycentric_grid(X.shape[0], p.eval_resolution)
frames = []
for name, vecs in (("mconnector", connectors.triangle_surface(res, query)), ("flat", query.to(X.device, X.dtype) @ X)):
    df = pd.DataFrame(connectors.evaluate_vectors(fm, ev, ds.task, vecs, None, bs))
    for i in range(query.shape[1]):
        df[f"w{i}"] = query[:, i].numpy()[df["index"].to_numpy()]
    frames.append(df.assign(surface=name))
table = pd.concat(frames, ignore_index=True).assign(dataset=ds.name, model=pts[0].model_spec["name"],
                                                     resolution=res.resolution, eval_resolution=p.eval_resolution,
                                                     seeds="-".join(str(q.meta.get("seed")) for q in pts),
                                                     variant=nodes.get("variant", "paper"), d=nodes.get("dim", -1),
                                                     subspace=nodes.get("subspace", "random"),
                                                     steps_per_node=nodes.get("steps_per_node", -1),
                                                     **ev.sizes)
io.write_parquet(table, snakemake.output.table)
tr = table[table.split == "train"]
log.info("max train loss: flat simplex %.4f, m-connector surface %.4f",
         tr[tr.surface == "flat"].loss.max(), tr[tr.surface == "mconnector"].loss.max())
