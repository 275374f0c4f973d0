"""A one-file search page for people who prefer a browser; it calls GET /search."""

PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>rag search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
form{display:flex;gap:.5rem}input[type=text]{flex:1;padding:.5rem;font-size:1rem}
button{padding:.5rem 1rem}.hit{border-top:1px solid #ddd;padding:.75rem 0}
.cite{color:#666;font-size:.85rem}.text{white-space:pre-wrap}.err{color:#b00}
</style></head><body>
<h1>Ask the corpus / 提问</h1>
<form id="f"><input type="text" id="q" placeholder="Can a foreigner activate it through Alipay? / 外国人能用支付宝激活吗?" autofocus>
<button>Search</button></form>
<div id="out"></div>
<script>
const f=document.getElementById('f'),q=document.getElementById('q'),out=document.getElementById('out');
function esc(s){return s.replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
f.onsubmit=async e=>{e.preventDefault();out.textContent='...';
 const r=await fetch('/search?top_k=5&q='+encodeURIComponent(q.value));const j=await r.json();
 if(!r.ok){out.innerHTML='<p class="err">'+esc(j.detail||r.statusText)+'</p>';return}
 out.innerHTML='<p class="cite">'+j.took_ms.toFixed(1)+' ms'+(j.answerable?'':
  ' · the corpus most likely does not answer this; closest passages below / 资料中可能没有答案')+'</p>'+j.passages.map(p=>
  '<div class="hit"><div class="text">'+esc(p.text)+'</div><div class="cite">#'+p.rank+' '+esc(p.citation.document)+
  ' · '+esc(p.citation.section.join(' > '))+' · lines '+p.citation.line_start+'-'+p.citation.line_end+
  ' · chars '+p.citation.start+'-'+p.citation.end+'</div></div>').join('');};
</script></body></html>
"""
