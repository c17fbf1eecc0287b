export function App() {
  return <p>Palisade</p>;
}
